/*
 * jpegnet's JPEG coefficient reader: entropy decoding only, over libjpeg-turbo's libjpeg API.
 *
 * A file is read as far as its quantized DCT coefficients (jpeg_read_header + jpeg_read_coefficients):
 * no IDCT, no colour conversion, no upsampling. Each component comes back as an int16 array of shape
 * (blocks_h, blocks_w, 64), natural (row-major) order inside a block: a view on libjpeg's own coefficient
 * arrays for a full read, or a copy for a block-aligned crop or a horizontal flip (applied while copying).
 *
 * The decode core (decode_one) touches no Python object, so it runs with the GIL released, on the
 * caller's thread or on the batch call's own pthreads. Errors never exit(): libjpeg's error_exit is
 * replaced by a longjmp back to the function that owns the decompressor, which frees it in one place and
 * reports the formatted libjpeg message.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <jpeglib.h>
#include <jerror.h>

#define MAX_PLANES 4
#define ERR_LEN 256
#define MAX_THREADS 256   /* a batch call's thread cap (reader.py clamps to it too) */

/* ------------------------------------------------------------------------------------------------ */
/* The owner of a decoded plane's memory, set as the numpy array's base: either a malloc'd block (crops and */
/* flips are copied out) or a whole libjpeg decoder whose coefficient arrays the planes view (full reads).  */
/* Freed when the last array goes away. The memory is allocated without the GIL by the decode workers.      */

typedef struct Decoder Decoder;
static void decoder_free(Decoder *d);

typedef struct {
    PyObject_HEAD
    void *data;         /* malloc'd plane, or NULL */
    Decoder *decoder;   /* or the decoder holding the coefficient arrays, or NULL */
} CoefBuffer;

static void CoefBuffer_dealloc(CoefBuffer *self) {
    free(self->data);
    if (self->decoder) decoder_free(self->decoder);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject CoefBufferType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "jpegnet.codec._reader.CoefBuffer",
    .tp_basicsize = sizeof(CoefBuffer),
    .tp_dealloc = (destructor)CoefBuffer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Owner of the memory behind decoded coefficient planes.",
};

/* Takes ownership of `data` (freed on failure too). */
static PyObject *wrap_owner(void *data) {
    CoefBuffer *buf = PyObject_New(CoefBuffer, &CoefBufferType);
    if (buf == NULL) {
        free(data);
        return NULL;
    }
    buf->data = data;
    buf->decoder = NULL;
    return (PyObject *)buf;
}

/* ------------------------------------------------------------------------------------------------ */
/* Options and results of one decode, plain C.                                                        */

typedef struct {
    int strict;               /* libjpeg warnings (corrupt data) are errors */
    long long max_pixels;     /* refuse larger images from the header; <= 0: no limit */
    int crop;                 /* crop_x/y/w/h valid */
    long crop_x, crop_y, crop_w, crop_h;
    int hflip;
    int header_only;          /* stop after the header: geometry, no coefficients */
    long long max_bytes;      /* paths: refuse files larger than this; <= 0: no limit */
} DecodeOptions;

typedef enum { ERR_NONE = 0, ERR_JPEG, ERR_TOO_LARGE, ERR_BAD_CROP, ERR_NO_MEMORY, ERR_IO } ErrorKind;

typedef struct {
    ErrorKind error;
    char message[ERR_LEN];
    int width, height;              /* of the returned area (after crop / flip trim) */
    int image_width, image_height;  /* of the whole file */
    int colorspace;                 /* J_COLOR_SPACE */
    int num_components;
    int progressive, arithmetic;
    int h_samp[MAX_PLANES], v_samp[MAX_PLANES];
    int blocks_h[MAX_PLANES], blocks_w[MAX_PLANES];
    int16_t *planes[MAX_PLANES];  /* malloc'd, blocks_h * blocks_w * 64 (copy-out) */
    Decoder *decoder;             /* or: the decoder still holding the coefficient arrays (full reads) */
    JCOEF *views[MAX_PLANES];     /* ... and each plane's first block in them */
    long row_blocks[MAX_PLANES];  /* blocks from one block row to the next in a view (libjpeg pads rows) */
    uint16_t quant[MAX_PLANES][DCTSIZE2];
    int num_warnings;
    char warning[ERR_LEN];
    int ran_out;                  /* the source reached the end of the data it was given (not a crop's stop) */
} DecodeResult;

/* ------------------------------------------------------------------------------------------------ */
/* libjpeg error manager: longjmp instead of exit(), warnings recorded or promoted to errors.         */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int strict;
    int stopped_early;  /* the source cut the data after the last needed row: later warnings are ours */
    DecodeResult *result;
} ErrorManager;

/* Records a failure in `res` and returns -1, so that a check can `return set_error(...)`. */
static int set_error(DecodeResult *res, ErrorKind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int set_error(DecodeResult *res, ErrorKind kind, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(res->message, ERR_LEN, fmt, args);
    va_end(args);
    res->error = kind;
    return -1;
}

/* libjpeg's error_exit, and every warning in strict mode: the formatted message, then back to the setjmp of the
 * function that owns the decompressor (the only place that destroys it). */
static void on_error_exit(j_common_ptr cinfo) {
    ErrorManager *err = (ErrorManager *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->result->message);
    err->result->error = ERR_JPEG;
    longjmp(err->jump, 1);
}

static void on_emit_message(j_common_ptr cinfo, int msg_level) {
    ErrorManager *err = (ErrorManager *)cinfo->err;
    if (msg_level >= 0) return; /* trace messages */
    if (err->stopped_early) return; /* the missing data after a crop's last row was cut on purpose */
    /* msg_level -1: a warning, which libjpeg raises for corrupt or truncated entropy data. */
    if (err->strict) on_error_exit(cinfo);
    DecodeResult *res = err->result;
    if (res->num_warnings == 0) (*cinfo->err->format_message)(cinfo, res->warning);
    res->num_warnings++;
}

static void on_output_message(j_common_ptr cinfo) { /* never print to stderr */ }

/* Every decompressor here reports through this manager: errors longjmp to jerr->jump, nothing is printed. */
static void install_error_manager(j_decompress_ptr cinfo, ErrorManager *jerr, int strict, DecodeResult *res) {
    cinfo->err = jpeg_std_error(&jerr->pub);
    jerr->pub.error_exit = on_error_exit;
    jerr->pub.emit_message = on_emit_message;
    jerr->pub.output_message = on_output_message;
    jerr->strict = strict;
    jerr->stopped_early = 0;
    jerr->result = res;
}

/* ------------------------------------------------------------------------------------------------ */
/* In-memory source that can stop early. Like jpeg_mem_src, but when a crop ends above the image's     */
/* bottom in a single-scan file, a progress hook (libjpeg calls it between iMCU rows) empties the      */
/* buffer once the crop's last row is decoded, and the next fill ends the stream with a fake EOI: the  */
/* rest of the file is never entropy decoded (libjpeg fills the remaining blocks with zeros, which are */
/* not copied out). The data is handed over whole, so libjpeg keeps its fast Huffman path, which it    */
/* only takes with at least 512 bytes per block of the MCU in the buffer.                             */

typedef struct {
    struct jpeg_source_mgr pub;
    const JOCTET *data;
    size_t size, pos;
    long stop_after;  /* last iMCU row needed; -1: everything */
    int stopped;
    struct jpeg_progress_mgr progress;
} MemorySource;

static const JOCTET fake_eoi[2] = {0xFF, JPEG_EOI};

static void source_init(j_decompress_ptr cinfo) {}

static void source_term(j_decompress_ptr cinfo) {}

/* Between iMCU rows: once every row the crop needs is decoded, drop the rest of the data. */
static void on_progress(j_common_ptr common) {
    j_decompress_ptr cinfo = (j_decompress_ptr)common;
    MemorySource *src = (MemorySource *)cinfo->src;
    if (!src->stopped && src->stop_after >= 0 && (long)cinfo->input_iMCU_row > src->stop_after) {
        src->stopped = 1;
        ((ErrorManager *)cinfo->err)->stopped_early = 1;
        src->pub.bytes_in_buffer = 0; /* the next read fills: a fake EOI */
    }
}

static boolean source_fill(j_decompress_ptr cinfo) {
    MemorySource *src = (MemorySource *)cinfo->src;
    if (src->stopped || src->pos >= src->size) {
        if (!src->stopped) {
            /* A header read from a file's prefix asks for the rest of the file only in this case. */
            ((ErrorManager *)cinfo->err)->result->ran_out = 1;
            WARNMS(cinfo, JWRN_JPEG_EOF); /* truncated file, as jpeg_mem_src reports it */
        }
        src->pub.next_input_byte = fake_eoi;
        src->pub.bytes_in_buffer = 2;
        return TRUE;
    }
    size_t n = src->size - src->pos;
    src->pub.next_input_byte = src->data + src->pos;
    src->pub.bytes_in_buffer = n;
    src->pos += n;
    return TRUE;
}

static void source_skip(j_decompress_ptr cinfo, long num_bytes) {
    MemorySource *src = (MemorySource *)cinfo->src;
    if (num_bytes <= 0) return;
    while (num_bytes > (long)src->pub.bytes_in_buffer) {
        num_bytes -= (long)src->pub.bytes_in_buffer;
        int at_end = src->stopped || src->pos >= src->size;
        source_fill(cinfo);
        if (at_end) return; /* only the fake EOI is left: stop there */
    }
    src->pub.next_input_byte += (size_t)num_bytes;
    src->pub.bytes_in_buffer -= (size_t)num_bytes;
}

static void memory_source(j_decompress_ptr cinfo, MemorySource *src, const unsigned char *data, size_t size) {
    memset(src, 0, sizeof(*src));
    src->pub.init_source = source_init;
    src->pub.fill_input_buffer = source_fill;
    src->pub.skip_input_data = source_skip;
    src->pub.resync_to_restart = jpeg_resync_to_restart;
    src->pub.term_source = source_term;
    src->data = data;
    src->size = size;
    src->stop_after = -1;
    src->progress.progress_monitor = on_progress;
    cinfo->src = &src->pub;
}

/* One decode's libjpeg state, on the heap: a full read hands it to Python as the owner of the planes. */
struct Decoder {
    struct jpeg_decompress_struct cinfo;
    ErrorManager jerr;
    MemorySource source;
};

static void decoder_free(Decoder *d) {
    jpeg_destroy_decompress(&d->cinfo);
    free(d);
}

/* ------------------------------------------------------------------------------------------------ */
/* One decode: header reading, crop checks, then views on libjpeg's arrays or a copy-out.           */

/* Horizontal mirror of one 8x8 block in the DCT domain: basis function u of column frequency is
 * symmetric for even u and antisymmetric for odd u, so mirroring negates odd column frequencies. */
static inline void copy_block_mirrored(int16_t *dst, const JCOEF *src) {
    for (int r = 0; r < DCTSIZE; r++) {
        const JCOEF *s = src + r * DCTSIZE;
        int16_t *d = dst + r * DCTSIZE;
        d[0] = s[0]; d[1] = (int16_t)-s[1]; d[2] = s[2]; d[3] = (int16_t)-s[3];
        d[4] = s[4]; d[5] = (int16_t)-s[5]; d[6] = s[6]; d[7] = (int16_t)-s[7];
    }
}

static void release_planes(DecodeResult *res) {
    for (int c = 0; c < MAX_PLANES; c++) {
        free(res->planes[c]);
        res->planes[c] = NULL;
    }
    if (res->decoder) decoder_free(res->decoder);
    res->decoder = NULL;
}

/* Full reads: every component's blocks already lie in one libjpeg allocation, rows `row_blocks` apart.
 * True when each plane can be returned as a view on them. */
static int views_possible(j_decompress_ptr cinfo, jvirt_barray_ptr *coefs, DecodeResult *res) {
    for (int c = 0; c < cinfo->num_components; c++) {
        long bh = res->blocks_h[c];
        JBLOCKROW first = (*cinfo->mem->access_virt_barray)((j_common_ptr)cinfo, coefs[c], 0, 1, FALSE)[0];
        long stride = 0;
        if (bh > 1) {
            JBLOCKROW second = (*cinfo->mem->access_virt_barray)((j_common_ptr)cinfo, coefs[c], 1, 1, FALSE)[0];
            stride = (long)(second - first);
            if (stride < res->blocks_w[c]) return 0;
            for (long r = 2; r < bh; r++) {
                JBLOCKROW row = (*cinfo->mem->access_virt_barray)((j_common_ptr)cinfo, coefs[c], (JDIMENSION)r, 1,
                                                                   FALSE)[0];
                if (row != first + r * stride) return 0; /* split over several chunks: copy instead */
            }
        }
        res->views[c] = first[0];
        res->row_blocks[c] = bh > 1 ? stride : res->blocks_w[c];
    }
    return 1;
}

/* The area a read returns, in image pixels [x0, x0 + w) x [y0, y0 + h), and its first block in each
 * component (the block counts go to the result: blocks_w, blocks_h). */
typedef struct {
    long x0, y0, w, h;
    long bx0[MAX_PLANES], by0[MAX_PLANES];
} Area;

/* Header reading: geometry, colour space and sampling into `res`. Decompression bombs (max_pixels) and component
 * counts beyond MAX_PLANES are refused here, before any coefficient memory is allocated. */
static int read_header(j_decompress_ptr cinfo, const DecodeOptions *opt, DecodeResult *res) {
    jpeg_read_header(cinfo, TRUE);
    res->image_width = res->width = (int)cinfo->image_width;
    res->image_height = res->height = (int)cinfo->image_height;
    res->colorspace = (int)cinfo->jpeg_color_space;
    res->num_components = cinfo->num_components;
    res->progressive = cinfo->progressive_mode ? 1 : 0;
    res->arithmetic = cinfo->arith_code ? 1 : 0;
    /* jpeg_read_header has refused sides above JPEG_MAX_DIMENSION (65500), so the product fits a long long, and
     * every block count and byte size derived from the image later fits a long / size_t. */
    long long pixels = (long long)cinfo->image_width * (long long)cinfo->image_height;
    if (opt->max_pixels > 0 && pixels > opt->max_pixels)
        return set_error(res, ERR_TOO_LARGE, "image is %ux%u = %lld pixels, above max_pixels=%lld",
                         cinfo->image_width, cinfo->image_height, pixels, opt->max_pixels);
    if (cinfo->num_components < 1 || cinfo->num_components > MAX_PLANES)
        return set_error(res, ERR_JPEG, "unsupported number of components: %d", cinfo->num_components);
    for (int c = 0; c < cinfo->num_components; c++) {
        res->h_samp[c] = cinfo->comp_info[c].h_samp_factor;
        res->v_samp[c] = cinfo->comp_info[c].v_samp_factor;
    }
    return 0;
}

/* Crop checks: the area to return (the crop, or the whole image), refused unless it lies inside the image on the
 * MCU grid; trimmed to whole MCU columns for a flip; then located in each component's blocks (res->blocks_w/h,
 * area->bx0/by0). Needs only the header. */
static int check_area(j_decompress_ptr cinfo, const DecodeOptions *opt, DecodeResult *res, Area *area) {
    const int max_h = cinfo->max_h_samp_factor, max_v = cinfo->max_v_samp_factor;
    const int mcu_w = DCTSIZE * max_h, mcu_h = DCTSIZE * max_v;
    const long image_w = (long)cinfo->image_width, image_h = (long)cinfo->image_height;
    long x0 = 0, y0 = 0, w = image_w, h = image_h;
    if (opt->crop) {
        x0 = opt->crop_x; y0 = opt->crop_y; w = opt->crop_w; h = opt->crop_h;
        /* Never form x0 + w from caller values (it wraps for x0 near LONG_MAX, and the block offsets below
         * wrapped with it: a heap read far past the plane). An origin past the image is refused first, so
         * `image_w - x0` is positive and the size is compared with what is left of the image. Once these pass,
         * every value is at most the image size (< 2^16, JPEG_MAX_DIMENSION) and nothing below overflows. */
        if (x0 < 0 || y0 < 0 || w <= 0 || h <= 0 || x0 >= image_w || y0 >= image_h || w > image_w - x0 ||
            h > image_h - y0)
            return set_error(res, ERR_BAD_CROP, "crop (x=%ld, y=%ld, w=%ld, h=%ld) is outside the %ux%u image",
                             x0, y0, w, h, cinfo->image_width, cinfo->image_height);
        /* Block-aligned for every component: the origin on the MCU grid, the size a whole number of
         * MCUs unless the crop reaches the image's right / bottom edge. */
        int x_ok = x0 % mcu_w == 0 && (w % mcu_w == 0 || x0 + w == image_w);
        int y_ok = y0 % mcu_h == 0 && (h % mcu_h == 0 || y0 + h == image_h);
        if (!x_ok || !y_ok)
            return set_error(res, ERR_BAD_CROP,
                             "crop (x=%ld, y=%ld, w=%ld, h=%ld) is not aligned to this image's %dx%d MCU grid",
                             x0, y0, w, h, mcu_w, mcu_h);
    }
    if (opt->hflip && w % mcu_w != 0) {
        /* A partial MCU column would land on the left edge misaligned: trim it, as jpegtran -flip -trim. */
        w -= w % mcu_w;
        if (w == 0)
            return set_error(res, ERR_BAD_CROP, "hflip needs at least one whole %d-pixel MCU column; the area is "
                             "narrower", mcu_w);
    }
    for (int c = 0; c < cinfo->num_components; c++) {
        const jpeg_component_info *comp = &cinfo->comp_info[c];
        /* The component's area in its own blocks. Origins are MCU aligned, so they divide exactly; sizes
         * round up like libjpeg's width_in_blocks (no padding blocks beyond those). */
        long bx0 = x0 * comp->h_samp_factor / max_h / DCTSIZE;
        long by0 = y0 * comp->v_samp_factor / max_v / DCTSIZE;
        long bw = ((w * comp->h_samp_factor + max_h - 1) / max_h + DCTSIZE - 1) / DCTSIZE;
        long bh = ((h * comp->v_samp_factor + max_v - 1) / max_v + DCTSIZE - 1) / DCTSIZE;
        if (bx0 + bw > (long)comp->width_in_blocks) bw = (long)comp->width_in_blocks - bx0;
        if (by0 + bh > (long)comp->height_in_blocks) bh = (long)comp->height_in_blocks - by0;
        if (bw <= 0 || bh <= 0 || bx0 < 0 || by0 < 0) /* cannot happen after the checks above: never copy then */
            return set_error(res, ERR_BAD_CROP, "crop covers no block of component %d", c);
        area->bx0[c] = bx0;
        area->by0[c] = by0;
        res->blocks_w[c] = (int)bw;
        res->blocks_h[c] = (int)bh;
    }
    area->x0 = x0; area->y0 = y0; area->w = w; area->h = h;
    res->width = (int)w;
    res->height = (int)h;
    return 0;
}

/* Rows below the area are never needed: in a single-scan file, stop entropy decoding after its last iMCU row
 * (every iMCU row is one MCU high). A multi-scan file needs every scan to the end. */
static void stop_below_area(Decoder *d, const Area *area) {
    j_decompress_ptr cinfo = &d->cinfo;
    if (area->y0 + area->h < (long)cinfo->image_height && !jpeg_has_multiple_scans(cinfo)) {
        d->source.stop_after = (area->y0 + area->h - 1) / (DCTSIZE * cinfo->max_v_samp_factor);
        cinfo->progress = &d->source.progress;
    }
}

/* Each component's quantization table, as latched by the scans that decoded it. */
static void read_quant_tables(j_decompress_ptr cinfo, DecodeResult *res) {
    for (int c = 0; c < cinfo->num_components; c++) {
        const jpeg_component_info *comp = &cinfo->comp_info[c];
        JQUANT_TBL *qt = comp->quant_table;
        if (qt == NULL && comp->quant_tbl_no >= 0 && comp->quant_tbl_no < NUM_QUANT_TBLS)
            qt = cinfo->quant_tbl_ptrs[comp->quant_tbl_no];
        for (int k = 0; k < DCTSIZE2; k++) res->quant[c][k] = qt ? (uint16_t)qt->quantval[k] : 0;
    }
}

/* Copy-out: the area's blocks of each component into a malloc'd plane of its own (res->planes), mirrored when
 * `hflip`. A plane is at most 8192 x 8192 blocks (65500 px / 8), so its byte size fits a size_t. */
static int copy_planes(j_decompress_ptr cinfo, jvirt_barray_ptr *coefs, const Area *area, int hflip,
                       DecodeResult *res) {
    for (int c = 0; c < cinfo->num_components; c++) {
        const long bw = res->blocks_w[c], bh = res->blocks_h[c];
        int16_t *plane = (int16_t *)malloc((size_t)bh * (size_t)bw * DCTSIZE2 * sizeof(int16_t));
        if (plane == NULL)
            return set_error(res, ERR_NO_MEMORY, "out of memory for %ldx%ld coefficient blocks", bh, bw);
        res->planes[c] = plane;
        for (long row = 0; row < bh; row++) {
            JBLOCKARRAY rows = (*cinfo->mem->access_virt_barray)((j_common_ptr)cinfo, coefs[c],
                                                                 (JDIMENSION)(area->by0[c] + row), 1, FALSE);
            JBLOCKROW src = rows[0] + area->bx0[c];
            int16_t *dst = plane + (size_t)row * (size_t)bw * DCTSIZE2;
            if (!hflip) {
                memcpy(dst, src, (size_t)bw * sizeof(JBLOCK));
            } else {
                for (long col = 0; col < bw; col++)
                    copy_block_mirrored(dst + (size_t)(bw - 1 - col) * DCTSIZE2, src[col]);
            }
        }
    }
    return 0;
}

/* Runs with no Python state. Returns 0 on success; on failure res->error / res->message say why. Every way out
 * once the decoder exists, libjpeg's longjmp included, passes through `done`, the one place that frees it. */
static int decode_one(const unsigned char *data, size_t size, const DecodeOptions *opt, DecodeResult *res) {
    memset(res, 0, sizeof(*res));
    if (size == 0) return set_error(res, ERR_JPEG, "empty input (0 bytes)");
    /* Zeroed: cinfo.mem stays NULL until jpeg_create_decompress has set up its memory, and
     * jpeg_destroy_decompress takes a NULL mem as nothing to free, so `done` may destroy from any point. */
    Decoder *const d = (Decoder *)calloc(1, sizeof(Decoder));
    if (d == NULL) return set_error(res, ERR_NO_MEMORY, "out of memory for a decoder");
    j_decompress_ptr const cinfo = &d->cinfo;
    install_error_manager(cinfo, &d->jerr, opt->strict, res);
    if (setjmp(d->jerr.jump)) goto done; /* libjpeg failed (or warned, when strict): res says why */

    jpeg_create_decompress(cinfo);
    memory_source(cinfo, &d->source, data, size);
    if (read_header(cinfo, opt, res) < 0 || opt->header_only) goto done;
    Area area;
    if (check_area(cinfo, opt, res, &area) < 0) goto done;
    if (opt->crop) stop_below_area(d, &area);
    jvirt_barray_ptr *coefs = jpeg_read_coefficients(cinfo);
    read_quant_tables(cinfo, res);
    if (!opt->crop && !opt->hflip && views_possible(cinfo, coefs, res)) {
        /* A full read returns views on libjpeg's own arrays, no copy: the decoder lives on as their owner.
         * Not finished: jpeg_finish_decompress would free the arrays (the whole file is read already). */
        res->decoder = d;
    } else if (copy_planes(cinfo, coefs, &area, opt->hflip, res) == 0) {
        jpeg_finish_decompress(cinfo);
    }
done:
    if (res->decoder != d) decoder_free(d);
    if (res->error == ERR_NONE) return 0;
    release_planes(res);
    return -1;
}

/* ------------------------------------------------------------------------------------------------ */
/* Python glue.                                                                                        */

static PyObject *JpegError = NULL; /* set from Python: jpegnet.codec.errors.JpegError (warnings are Python's) */

static const char *colorspace_name(int cs) {
    switch (cs) {
    case JCS_GRAYSCALE: return "gray";
    case JCS_YCbCr: return "ycbcr";
    case JCS_RGB: return "rgb";
    case JCS_CMYK: return "cmyk";
    case JCS_YCCK: return "ycck";
    default: return "unknown";
    }
}

/* Builds the result tuple consumed by jpegnet/codec/reader.py, or an exception instance. Takes
 * ownership of the planes. Never returns NULL without an exception set. */
static PyObject *result_to_python(DecodeResult *res, PyObject *where, int header_only) {
    if (res->error != ERR_NONE) {
        PyObject *cls = JpegError ? JpegError : PyExc_ValueError;
        const char *kind = res->error == ERR_TOO_LARGE ? "too_large"
                         : res->error == ERR_BAD_CROP ? "bad_crop"
                         : res->error == ERR_NO_MEMORY ? "no_memory"
                         : res->error == ERR_IO ? "io" : "jpeg";
        PyObject *exc = PyObject_CallFunction(cls, "sOs", res->message, where ? where : Py_None, kind);
        release_planes(res);
        return exc; /* an exception instance (or NULL with the call's error set) */
    }
    if (header_only) {
        PyObject *samp = PyTuple_New(res->num_components);
        if (!samp) return NULL;
        for (int c = 0; c < res->num_components; c++) {
            PyObject *sv = Py_BuildValue("(ii)", res->h_samp[c], res->v_samp[c]);
            if (!sv) { Py_DECREF(samp); return NULL; }
            PyTuple_SET_ITEM(samp, c, sv);
        }
        return Py_BuildValue("(iisNii)", res->image_width, res->image_height, colorspace_name(res->colorspace),
                             samp, res->progressive, res->arithmetic);
    }
    PyObject *owner = NULL; /* full reads: one buffer object owning the decoder, base of every plane */
    PyObject *planes = PyTuple_New(res->num_components);
    PyObject *quants = PyTuple_New(res->num_components);
    PyObject *sampling = PyTuple_New(res->num_components);
    if (!planes || !quants || !sampling) goto fail;
    if (res->decoder) {
        owner = wrap_owner(NULL);
        if (!owner) goto fail;
        ((CoefBuffer *)owner)->decoder = res->decoder;
        res->decoder = NULL;
    }
    for (int c = 0; c < res->num_components; c++) {
        if (owner) {
            npy_intp vdims[3] = {res->blocks_h[c], res->blocks_w[c], DCTSIZE2};
            npy_intp vstrides[3] = {(npy_intp)(res->row_blocks[c] * (long)sizeof(JBLOCK)), (npy_intp)sizeof(JBLOCK),
                                    (npy_intp)sizeof(JCOEF)};
            PyObject *view = PyArray_New(&PyArray_Type, 3, vdims, NPY_INT16, vstrides, res->views[c], 0,
                                         NPY_ARRAY_WRITEABLE | NPY_ARRAY_ALIGNED, NULL);
            if (!view) goto fail;
            Py_INCREF(owner);
            if (PyArray_SetBaseObject((PyArrayObject *)view, owner) < 0) { /* steals the new reference */
                Py_DECREF(view);
                goto fail;
            }
            PyTuple_SET_ITEM(planes, c, view);
        } else {
            PyObject *buf = wrap_owner(res->planes[c]);
            res->planes[c] = NULL; /* owned by buf now (or freed) */
            if (!buf) goto fail;
            /* A numpy view on the C memory: (blocks_h, blocks_w, 64) int16, the buffer object as its base. */
            npy_intp dims[3] = {res->blocks_h[c], res->blocks_w[c], DCTSIZE2};
            PyObject *arr = PyArray_New(&PyArray_Type, 3, dims, NPY_INT16, NULL, ((CoefBuffer *)buf)->data, 0,
                                        NPY_ARRAY_CARRAY, NULL);
            if (!arr) {
                Py_DECREF(buf);
                goto fail;
            }
            if (PyArray_SetBaseObject((PyArrayObject *)arr, buf) < 0) { /* steals buf */
                Py_DECREF(arr);
                goto fail;
            }
            PyTuple_SET_ITEM(planes, c, arr);
        }
        npy_intp qdims[1] = {DCTSIZE2};
        PyObject *q = PyArray_SimpleNew(1, qdims, NPY_UINT16);
        if (!q) goto fail;
        memcpy(PyArray_DATA((PyArrayObject *)q), res->quant[c], sizeof(res->quant[c]));
        PyTuple_SET_ITEM(quants, c, q);
        PyObject *s = Py_BuildValue("(ii)", res->h_samp[c], res->v_samp[c]);
        if (!s) goto fail;
        PyTuple_SET_ITEM(sampling, c, s);
    }
    Py_XDECREF(owner);
    owner = NULL;
    PyObject *warning = res->num_warnings ? PyUnicode_FromString(res->warning) : Py_NewRef(Py_None);
    if (!warning) goto fail;
    return Py_BuildValue("(iisNNNiiiiN)", res->width, res->height, colorspace_name(res->colorspace), sampling,
                         planes, quants, res->progressive, res->arithmetic, res->image_width, res->image_height,
                         warning);
fail:
    release_planes(res);
    Py_XDECREF(owner);
    Py_XDECREF(planes);
    Py_XDECREF(quants);
    Py_XDECREF(sampling);
    return NULL;
}

/* A crop argument: None (the whole image) or (x, y, width, height); checked against the image in check_area. */
static int parse_crop(PyObject *crop, DecodeOptions *opt) {
    opt->crop = 0;
    if (crop == NULL || crop == Py_None) return 0;
    if (!PyArg_ParseTuple(crop, "llll;crop must be a tuple (x, y, width, height)", &opt->crop_x, &opt->crop_y,
                          &opt->crop_w, &opt->crop_h))
        return -1;
    opt->crop = 1;
    return 0;
}

/* Turns a failed decode's exception instance into a raised exception; passes results (and NULL) through. */
static PyObject *raise_if_error(PyObject *out, const DecodeResult *res) {
    if (out != NULL && res->error != ERR_NONE) {
        PyErr_SetObject((PyObject *)Py_TYPE(out), out);
        Py_CLEAR(out);
    }
    return out;
}

/* decode(data, max_pixels, *, strict=True, crop=None, hflip=False, header_only=False, where=None) -> result
 * tuple (header tuple with header_only); raises JpegError. max_pixels <= 0: no limit. */
static PyObject *py_decode(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"", "max_pixels", "strict", "crop", "hflip", "header_only", "where", NULL};
    Py_buffer view;
    DecodeOptions opt = {.strict = 1};
    PyObject *crop = Py_None, *where = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*L|$pOppO:decode", keywords, &view, &opt.max_pixels,
                                     &opt.strict, &crop, &opt.hflip, &opt.header_only, &where))
        return NULL;
    PyObject *out = NULL;
    if (parse_crop(crop, &opt) == 0) {
        DecodeResult res;
        Py_BEGIN_ALLOW_THREADS
        decode_one((const unsigned char *)view.buf, (size_t)view.len, &opt, &res);
        Py_END_ALLOW_THREADS
        out = raise_if_error(result_to_python(&res, where, opt.header_only), &res);
    }
    PyBuffer_Release(&view);
    return out;
}

/* ------------------------------------------------------------------------------------------------ */
/* Batch decode on pthreads: each item is a bytes-like object or a path (bytes, filesystem encoding).  */

typedef struct {
    Py_buffer view;     /* for in-memory items */
    int is_path;
    int bad_path;       /* the path holds a NUL byte: reported as an error, never truncated and opened */
    const char *path;   /* borrowed from a bytes object kept alive by the caller */
    DecodeOptions opt;  /* per item: crops may differ */
    DecodeResult res;
} BatchItem;

typedef struct {
    BatchItem *items;
    Py_ssize_t count;
    Py_ssize_t next; /* the next item to claim, atomically incremented */
} BatchJob;

/* read() until `want` bytes or the end of the file; EINTR retried. Returns the bytes read, or -1 (errno). */
static long long read_upto(int fd, unsigned char *buf, size_t want) {
    size_t got = 0;
    while (got < want) {
        size_t chunk = want - got > (1u << 30) ? (1u << 30) : want - got;
        ssize_t n = read(fd, buf + got, chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) break;
        got += (size_t)n;
    }
    return (long long)got;
}

static const char *file_type_name(mode_t mode) {
    return S_ISDIR(mode) ? "a directory" : S_ISFIFO(mode) ? "a FIFO" : S_ISCHR(mode) ? "a character device"
         : S_ISBLK(mode) ? "a block device" : S_ISSOCK(mode) ? "a socket" : "not a regular file";
}

/* A header read takes a file's first HEADER_PREFIX bytes, and the rest only when the header runs past them. */
#define HEADER_PREFIX 65536

/* Read a file and decode it. Only regular files are read: the file is opened without blocking (a FIFO with no
 * writer would block open() and read() forever) and fstat'ed before any read, so a FIFO, a device such as
 * /dev/zero (endless data), a directory or a socket is refused. At most opt->max_bytes are read. Every way out
 * once the file is open passes through `done`, which closes it and frees the data. */
static void decode_path(const char *path, const DecodeOptions *opt, DecodeResult *res) {
    memset(res, 0, sizeof(*res));
    unsigned char *data = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        set_error(res, ERR_IO, "cannot read file: %s", strerror(errno));
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_error(res, ERR_IO, "cannot stat file: %s", strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        set_error(res, ERR_IO, "cannot read file: not a regular file: %s", file_type_name(st.st_mode));
        goto done;
    }
    /* O_NONBLOCK has no effect on a regular file's reads; clear it anyway so nothing depends on that. */
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    /* Sizes as unsigned long long, capped at SSIZE_MAX: `+ 1` below cannot wrap, and size_t holds them. */
    unsigned long long file_size = st.st_size > 0 ? (unsigned long long)st.st_size : 0;
    unsigned long long limit = opt->max_bytes > 0 ? (unsigned long long)opt->max_bytes : ULLONG_MAX;
    if (limit > (unsigned long long)SSIZE_MAX) limit = (unsigned long long)SSIZE_MAX;
    int prefix = opt->header_only && file_size > HEADER_PREFIX;
    if (!prefix && file_size > limit) {
        set_error(res, ERR_TOO_LARGE, "file is %llu bytes, above max_bytes=%lld", file_size, opt->max_bytes);
        goto done;
    }
    size_t want = prefix ? HEADER_PREFIX : (size_t)file_size;
    data = (unsigned char *)malloc(want + 1); /* + 1: never malloc(0) for an empty file */
    if (data == NULL) {
        set_error(res, ERR_NO_MEMORY, "out of memory reading file");
        goto done;
    }
    long long got = read_upto(fd, data, want);
    if (got >= 0 && prefix) {
        DecodeOptions strict_header = *opt;
        strict_header.strict = 1; /* running out of the prefix must not pass as a good header */
        if (decode_one(data, (size_t)got, &strict_header, res) == 0 || !res->ran_out || (size_t)got < want)
            goto done; /* a header, or an error that more data would not cure (e.g. "Not a JPEG file") */
        if (file_size > limit) {
            set_error(res, ERR_TOO_LARGE, "the header runs past the first %d bytes and the file is %llu bytes, "
                      "above max_bytes=%lld", HEADER_PREFIX, file_size, opt->max_bytes);
            goto done;
        }
        unsigned char *bigger = (unsigned char *)realloc(data, (size_t)file_size + 1);
        if (bigger == NULL) {
            set_error(res, ERR_NO_MEMORY, "out of memory reading file");
            goto done;
        }
        data = bigger;
        long long more = read_upto(fd, data + got, (size_t)file_size - (size_t)got);
        got = more < 0 ? -1 : got + more;
    }
    if (got < 0)
        set_error(res, ERR_IO, "read error: %s", strerror(errno));
    else
        decode_one(data, (size_t)got, opt, res);
done:
    free(data);
    close(fd);
}

static void *batch_worker(void *arg) {
    BatchJob *job = (BatchJob *)arg;
    for (;;) {
        Py_ssize_t i = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (i >= job->count) break;
        BatchItem *it = &job->items[i];
        if (it->bad_path)
            set_error(&it->res, ERR_IO, "cannot read file: the path contains a NUL byte");
        else if (it->is_path)
            decode_path(it->path, &it->opt, &it->res);
        else
            decode_one((const unsigned char *)it->view.buf, (size_t)it->view.len, &it->opt, &it->res);
    }
    return NULL;
}

/* Decodes every item on this thread and `threads - 1` others, without the GIL, and returns when all are done:
 * the caller converts the results afterwards. (Converting on this thread while the others still decoded, item
 * by item behind a condition variable, measured no faster: benchmarks/reader.py --builds.) */
static void run_batch(BatchItem *items, Py_ssize_t count, int threads) {
    BatchJob job = {.items = items, .count = count, .next = 0};
    if (threads > count) threads = count > 0 ? (int)count : 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    pthread_t tids[MAX_THREADS];
    int started = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int t = 1; t < threads; t++)
        if (pthread_create(&tids[started], NULL, batch_worker, &job) == 0) started++;
    batch_worker(&job); /* a thread that failed to start only means fewer decoders */
    for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
    Py_END_ALLOW_THREADS
}

/* Borrows item i of the batch for the decode (a path's bytes, or a buffer on the data), with its options. */
static int acquire_item(BatchItem *it, PyObject *obj, int is_path, PyObject *crops, Py_ssize_t i,
                        const DecodeOptions *shared) {
    it->opt = *shared;
    if (crops != Py_None) {
        PyObject *crop = PySequence_GetItem(crops, i);
        int rc = crop ? parse_crop(crop, &it->opt) : -1;
        Py_XDECREF(crop);
        if (rc < 0) return -1;
    }
    if (!is_path) return PyObject_GetBuffer(obj, &it->view, PyBUF_SIMPLE);
    it->is_path = 1;
    it->path = PyBytes_AsString(obj);
    if (!it->path) return -1;
    it->bad_path = strlen(it->path) != (size_t)PyBytes_GET_SIZE(obj);
    return 0;
}

/* decode_batch(items, path_flags, max_pixels, max_bytes, *, threads=1, strict=True, crops=None, hflip=False,
 * header_only=False, wheres=None) -> list of result tuples or JpegError instances, in input order (the Python
 * side decides whether to raise). items: bytes-like objects, or paths as bytes (read inside the worker threads)
 * where path_flags, one byte per item, is non-zero. crops and wheres: None, or one crop (or None) / one name per
 * item. max_pixels, max_bytes <= 0: no limit. */
static PyObject *py_decode_batch(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"", "path_flags", "max_pixels", "max_bytes", "threads", "strict", "crops", "hflip",
                               "header_only", "wheres", NULL};
    PyObject *seq, *path_flags, *crops = Py_None, *wheres = Py_None;
    DecodeOptions opt = {.strict = 1};
    int threads = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OSLL|$ipOppO:decode_batch", keywords, &seq, &path_flags,
                                     &opt.max_pixels, &opt.max_bytes, &threads, &opt.strict, &crops, &opt.hflip,
                                     &opt.header_only, &wheres))
        return NULL;
    PyObject *fast = PySequence_Fast(seq, "items must be a sequence");
    if (!fast) return NULL;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject *out = NULL;
    BatchItem *items = NULL;
    Py_ssize_t acquired = 0;
    if (PyBytes_GET_SIZE(path_flags) != n) {
        PyErr_SetString(PyExc_TypeError, "path_flags must be bytes with one flag per item");
        goto done;
    }
    if (crops != Py_None && (!PySequence_Check(crops) || PySequence_Size(crops) != n)) {
        PyErr_SetString(PyExc_TypeError, "crops must be a sequence with one crop (or None) per item");
        goto done;
    }
    if (wheres != Py_None && (!PySequence_Check(wheres) || PySequence_Size(wheres) != n)) {
        PyErr_SetString(PyExc_TypeError, "wheres must be a sequence with one name per item");
        goto done;
    }
    items = (BatchItem *)calloc(n > 0 ? (size_t)n : 1, sizeof(BatchItem));
    if (!items) {
        PyErr_NoMemory();
        goto done;
    }
    for (; acquired < n; acquired++) {
        int is_path = PyBytes_AS_STRING(path_flags)[acquired] != 0;
        if (acquire_item(&items[acquired], PySequence_Fast_GET_ITEM(fast, acquired), is_path, crops, acquired,
                         &opt) < 0)
            goto done;
    }
    run_batch(items, n, threads);
    out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *where = wheres == Py_None ? Py_NewRef(Py_None) : PySequence_GetItem(wheres, i);
        PyObject *r = where ? result_to_python(&items[i].res, where, items[i].opt.header_only) : NULL;
        Py_XDECREF(where);
        if (r)
            PyList_SET_ITEM(out, i, r);
        else
            Py_CLEAR(out);
    }
done:
    if (items) {
        for (Py_ssize_t i = 0; i < n; i++) release_planes(&items[i].res); /* those not handed to Python */
        for (Py_ssize_t i = 0; i < acquired; i++)
            if (!items[i].is_path) PyBuffer_Release(&items[i].view);
        free(items);
    }
    Py_DECREF(fast);
    return out;
}

/* ------------------------------------------------------------------------------------------------ */
/* Benchmark reference: the bare libjpeg calls, timed in C, no copy-out, no Python per image.          */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The bare libjpeg coefficient read of one file. Returns 0, or -1 when libjpeg fails. */
static int bare_read(const unsigned char *data, size_t size) {
    struct jpeg_decompress_struct cinfo;
    ErrorManager jerr;
    DecodeResult scratch;
    memset(&scratch, 0, sizeof(scratch));
    install_error_manager(&cinfo, &jerr, 0, &scratch);
    if (setjmp(jerr.jump) == 0) {
        jpeg_create_decompress(&cinfo);
        jpeg_mem_src(&cinfo, data, (unsigned long)size);
        jpeg_read_header(&cinfo, TRUE);
        jpeg_read_coefficients(&cinfo);
        jpeg_finish_decompress(&cinfo);
    }
    jpeg_destroy_decompress(&cinfo); /* after success and after a longjmp alike */
    return scratch.error == ERR_NONE ? 0 : -1;
}

/* bare_read_coefficients_seconds(list_of_bytes) -> total seconds for one pass of
 * jpeg_read_header + jpeg_read_coefficients + finish over all items. */
static PyObject *py_bare_seconds(PyObject *self, PyObject *args) {
    PyObject *seq;
    if (!PyArg_ParseTuple(args, "O", &seq)) return NULL;
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of bytes");
    if (!fast) return NULL;
    PyObject *out = NULL;
    double total = 0.0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
        char *buf;
        Py_ssize_t len;
        if (PyBytes_AsStringAndSize(PySequence_Fast_GET_ITEM(fast, i), &buf, &len) < 0) goto done;
        double t0 = now_seconds();
        int rc = bare_read((const unsigned char *)buf, (size_t)len);
        total += now_seconds() - t0;
        if (rc < 0) {
            PyErr_SetString(PyExc_ValueError, "bare_read_coefficients_seconds: a file failed to decode");
            goto done;
        }
    }
    out = PyFloat_FromDouble(total);
done:
    Py_DECREF(fast);
    return out;
}

/* decode_pixels(data, *, fancy_upsampling=False) -> (width, height, channels, bytes): libjpeg-turbo's own full
 * decode (ISLOW IDCT, box upsampling unless fancy_upsampling, its colour conversion to RGB / gray / CMYK). Used by
 * tests and benchmarks as the pixel reference; never on the DCT path. */
static PyObject *py_decode_pixels(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"", "fancy_upsampling", NULL};
    Py_buffer view;
    int fancy = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|$p:decode_pixels", keywords, &view, &fancy)) return NULL;
    struct jpeg_decompress_struct cinfo;
    ErrorManager jerr;
    DecodeResult scratch;
    memset(&scratch, 0, sizeof(scratch));
    unsigned char *volatile pixels = NULL;
    PyObject *out = NULL;
    install_error_manager(&cinfo, &jerr, 1, &scratch);
    if (setjmp(jerr.jump)) {
        PyErr_Format(JpegError ? JpegError : PyExc_ValueError, "%s", scratch.message);
        goto done;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, (const unsigned char *)view.buf, (unsigned long)view.len);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_YCbCr || cinfo.jpeg_color_space == JCS_RGB) cinfo.out_color_space = JCS_RGB;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = fancy ? TRUE : FALSE;
    jpeg_start_decompress(&cinfo);
    /* At most 65500 x 65500 pixels of 4 channels (JPEG_MAX_DIMENSION): below 2^35 bytes, no size_t overflow. */
    size_t stride = (size_t)cinfo.output_width * cinfo.output_components;
    pixels = (unsigned char *)malloc(stride * cinfo.output_height + 1);
    if (!pixels) {
        PyErr_NoMemory();
        goto done;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + stride * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    out = Py_BuildValue("(iiiy#)", (int)cinfo.output_width, (int)cinfo.output_height, cinfo.output_components,
                        (const char *)pixels, (Py_ssize_t)(stride * cinfo.output_height));
done:
    jpeg_destroy_decompress(&cinfo);
    free(pixels);
    PyBuffer_Release(&view);
    return out;
}

/* set_error_class(JpegError): the class every decode error is raised (or returned) as. */
static PyObject *py_set_error_class(PyObject *self, PyObject *cls) {
    Py_XSETREF(JpegError, Py_NewRef(cls));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decode", (PyCFunction)(void (*)(void))py_decode, METH_VARARGS | METH_KEYWORDS,
     "decode(data, max_pixels, *, strict=True, crop=None, hflip=False, header_only=False, where=None) -> tuple"},
    {"decode_batch", (PyCFunction)(void (*)(void))py_decode_batch, METH_VARARGS | METH_KEYWORDS,
     "decode_batch(items, path_flags, max_pixels, max_bytes, *, threads=1, strict=True, crops=None, hflip=False, "
     "header_only=False, wheres=None) -> list"},
    {"bare_read_coefficients_seconds", py_bare_seconds, METH_VARARGS,
     "Seconds for one pass of the bare libjpeg coefficient read over a list of bytes (benchmark reference)."},
    {"decode_pixels", (PyCFunction)(void (*)(void))py_decode_pixels, METH_VARARGS | METH_KEYWORDS,
     "decode_pixels(data, *, fancy_upsampling=False) -> (w, h, channels, bytes): libjpeg-turbo's full decode."},
    {"set_error_class", py_set_error_class, METH_O, "Install the Python exception class of decode errors."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_reader",
    .m_doc = "JPEG -> quantized DCT coefficients over libjpeg-turbo.",
    .m_size = -1,
    .m_methods = methods,
};

/* glibc hands blocks above 128 KiB out as fresh mmap()s and gives freed heap tops back to the kernel, so every
 * decode of a full-size image (libjpeg's coefficient arrays plus our planes: ~1-2 MB) pays page faults on
 * fresh memory, and threads of one process serialise on the address-space lock that mmap/munmap take. Keeping
 * such blocks in the heap (and not trimming it below 256 MiB) removes both: measured on the 2-core dev box,
 * 1.3x -> 1.07x the bare libjpeg time on ImageNet originals, and 2-thread batch scaling from 1.2x to 1.8x.
 * Skipped when the user tunes malloc themselves, or with JPEGNET_TUNE_MALLOC=0. */
static void tune_malloc(void) {
    const char *opt = getenv("JPEGNET_TUNE_MALLOC");
    if (opt != NULL && strcmp(opt, "0") == 0) return;
    if (getenv("GLIBC_TUNABLES") || getenv("MALLOC_MMAP_THRESHOLD_") || getenv("MALLOC_TRIM_THRESHOLD_")) return;
#ifdef M_MMAP_THRESHOLD
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
#endif
}

PyMODINIT_FUNC PyInit__reader(void) {
    tune_malloc();
    import_array();
    if (PyType_Ready(&CoefBufferType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    PyModule_AddIntConstant(m, "LIBJPEG_VERSION", JPEG_LIB_VERSION);
    return m;
}
