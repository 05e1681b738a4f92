/* mdps: the C interface (C89-compatible declarations) over mdps/mdps.h, for
 * C, Python ctypes, C#, Rust and other foreign callers.
 *
 *   mdps_options o;
 *   mdps_detector* det = NULL;
 *   float score;
 *   mdps_options_init(&o);
 *   o.unet_path = "model.safetensors";
 *   o.features_path = "resnet18.safetensors";
 *   if (mdps_detector_create(&o, &det) != MDPS_OK) { puts(mdps_last_error()); ... }
 *   mdps_score(det, rgb, w, h, 3, 0, &score, NULL, 0, 0, NULL);
 *   mdps_detector_destroy(det);
 *
 * Ownership: handles are opaque and owned by the caller from create to
 * destroy; every buffer is the caller's (read or written during the call
 * only). Strings in mdps_options are copied by create.
 * Errors: every function returns a status; nothing throws across this
 * interface or exits the process. mdps_last_error() gives the message of the
 * last failure on the calling thread.
 * Threads: as the C++ Detector (see mdps.h): calls from any thread, computing
 * calls serialised process-wide. */
#ifndef MDPS_MDPS_C_H
#define MDPS_MDPS_C_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mdps_detector mdps_detector;

typedef enum mdps_status {
  MDPS_OK = 0,
  MDPS_ERR_INVALID_ARGUMENT = 1, /* a null pointer, a bad size or channel count */
  MDPS_ERR_FAILED = 2,           /* the engine failed: a file, an option, the device (see mdps_last_error) */
  MDPS_ERR_OUT_OF_MEMORY = 3    /* an allocation failed; the message names what and how many bytes */
} mdps_status;

/* Every field as DetectorOptions in mdps.h; fill with mdps_options_init
 * first, then set what differs. NULL strings mean the default.
 * ABI: struct_size (set by mdps_options_init to this header's
 * sizeof(mdps_options)) tells the library which fields the caller knows. New
 * fields are only ever appended; a library reading a smaller struct_size uses
 * the defaults for the fields after it, and refuses a struct_size larger than
 * its own or below the first version's (see docs/embedding.md). */
typedef struct mdps_options {
  uint32_t struct_size;        /* sizeof(mdps_options); set by mdps_options_init */
  const char* unet_path;       /* required: a model, checkpoint or detector bundle */
  const char* features_path;   /* NULL or "": pixel term only */
  const char* features_prefix; /* NULL or "": automatic */
  const char* preset;          /* NULL or "": none */
  /* Further settings applied last, "key=value" pairs separated by ';', keys as
   * `mdps eval` options without dashes, e.g. "layers=2,3;ddim-eta=0". */
  const char* overrides;
  const char* variant;         /* "authors" (default) or "paper" */
  const char* image_score;     /* "auto" (default: topk-fraction with a feature memory, normal-z calibrated, else authors), "authors", "topk-mean", "max", "topk-fraction", "normal-z" */
  const char* device;          /* "cpu" (default), "cuda" or "auto" */
  int round1_t;
  float round1_rho;
  int round2_t;
  float round2_rho;
  float lambda;
  float eta;                   /* NaN (default): auto, 7 max(1, 128/S)^2 calibrated, 7 authors */
  int skip;
  int samples;                 /* Ns; 0: the protocol's (2 calibrated, 1 authors) */
  int batch;
  int threads;                 /* 0: all cores */
  uint64_t seed;
  float image_threshold;       /* NaN: the bundle's, else no decision */
  float pixel_threshold;       /* NaN: the bundle's, else no defect mask */
} mdps_options;

/* "0.1.0" */
const char* mdps_version(void);

/* The defaults of DetectorOptions. */
void mdps_options_init(mdps_options* options);

/* Loads the model and features; *out is NULL on failure. */
mdps_status mdps_detector_create(const mdps_options* options, mdps_detector** out);
/* NULL is allowed. */
void mdps_detector_destroy(mdps_detector* detector);

/* The model's input size (square); 0 for NULL. */
int mdps_image_size(const mdps_detector* detector);

/* The thresholds in effect (the options', else a bundle's); NaN where there
 * is none. Either output may be NULL. */
mdps_status mdps_detector_thresholds(const mdps_detector* detector, float* image_threshold, float* pixel_threshold);

/* Scores one image of 8-bit pixels (channels 1, 3 or 4; stride in bytes, 0:
 * packed). Outputs may be NULL when not wanted:
 *   image_score  the image's score
 *   heat_map     heat_w * heat_h floats, row-major: the anomaly map resized
 *                bilinearly to that size (e.g. width x height of the input)
 *   anomalous    1 / 0 against the image threshold, -1 when there is none
 * On failure the outputs are left unchanged. */
mdps_status mdps_score(mdps_detector* detector, const uint8_t* pixels, int width, int height, int channels,
                       int stride, float* image_score, float* heat_map, int heat_w, int heat_h, int* anomalous);

/* The binary defect mask (heat_w * heat_h bytes, 1 = defect) of the last
 * mdps_score call on this detector, resized by nearest neighbour. Fails when
 * the detector has no pixel threshold or has not scored yet. */
mdps_status mdps_last_defect_mask(mdps_detector* detector, uint8_t* mask, int heat_w, int heat_h);

/* The message of the calling thread's last failure ("" if none). Valid until
 * the next mdps_* call on that thread. */
const char* mdps_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* MDPS_MDPS_C_H */
