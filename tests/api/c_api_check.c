/* The C interface driven from C (issue 9: "one test calls it from C"); the
 * doctest suite tests/api/test_api.cpp calls run_c_api_check and compares what
 * comes back with the C++ API on the same pixels. */
#include "include/mdps/mdps_c.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...)                          \
  do {                                     \
    snprintf(err, (size_t)err_len, __VA_ARGS__); \
    goto done;                             \
  } while (0)

/* Scores the RGBA image (w x h, packed) and returns 0, or a failure number
 * with a message in err. score_out / heat_out (w*h) receive the score and the
 * heat map at the input size. */
int run_c_api_check(const char* model, const char* features, const uint8_t* rgba, int w, int h, float* score_out,
                    float* heat_out, char* err, int err_len) {
  int rc = 1, anomalous = 7, S, k, i;
  float score = 0.f, again = 0.f, untouched = -123.f;
  mdps_options o;
  mdps_detector* det = NULL;
  mdps_detector* det2 = NULL;
  float lo, hi;
  int ones = 0;
  mdps_detector* none = (mdps_detector*)&o;
  uint8_t* padded = NULL;
  float* heat = NULL;
  uint8_t* mask = NULL;
  const int stride = w * 4 + 5;

  if (!mdps_version() || strlen(mdps_version()) == 0) FAIL("mdps_version is empty");
  if (mdps_detector_create(NULL, &det) != MDPS_ERR_INVALID_ARGUMENT || det != NULL)
    FAIL("create(NULL options) did not fail with MDPS_ERR_INVALID_ARGUMENT");
  if (strlen(mdps_last_error()) == 0) FAIL("no message after a failed create");

  mdps_options_init(&o);
  if (o.round2_t != 200 || o.skip != 20 || !isnan(o.image_threshold)) FAIL("mdps_options_init: wrong defaults");
  o.unet_path = "/nonexistent/model.safetensors";
  if (mdps_detector_create(&o, &none) != MDPS_ERR_FAILED || none != NULL)
    FAIL("create with a missing model did not fail with MDPS_ERR_FAILED and a NULL handle");
  if (!strstr(mdps_last_error(), "/nonexistent/model.safetensors"))
    FAIL("the missing model's message does not name it: %s", mdps_last_error());

  o.unet_path = model;
  o.features_path = features;
  o.round1_t = 40;
  o.round1_rho = 5.f;
  o.round2_t = 40;
  o.round2_rho = 5.f;
  o.threads = 2;
  o.overrides = "blur-kernel=9;blur-sigma=2";
  o.image_threshold = -1.f; /* every score is above it */
  if (mdps_detector_create(&o, &det) != MDPS_OK) FAIL("create failed: %s", mdps_last_error());
  S = mdps_image_size(det);
  if (S <= 0) FAIL("image size %d", S);

  /* The same pixels with padded rows must score the same. */
  padded = (uint8_t*)calloc((size_t)stride * h, 1);
  heat = (float*)malloc(sizeof(float) * (size_t)S * S);
  mask = (uint8_t*)malloc((size_t)S * S);
  if (!padded || !heat || !mask) FAIL("out of memory");
  for (i = 0; i < h; ++i) memcpy(padded + (size_t)i * stride, rgba + (size_t)i * w * 4, (size_t)w * 4);

  if (mdps_score(det, rgba, w, h, 4, 0, &score, heat_out, w, h, &anomalous) != MDPS_OK)
    FAIL("score failed: %s", mdps_last_error());
  if (!isfinite(score) || anomalous != 1) FAIL("score %g, anomalous %d (threshold -1)", score, anomalous);
  for (k = 0; k < w * h; ++k)
    if (!isfinite(heat_out[k]) || heat_out[k] < 0.f) FAIL("heat map value %d is %g", k, heat_out[k]);
  if (mdps_score(det, padded, w, h, 4, stride, &again, NULL, 0, 0, NULL) != MDPS_OK)
    FAIL("padded score failed: %s", mdps_last_error());
  if (again != score) FAIL("stride %d scored %.9g, packed %.9g", stride, again, score);

  /* Bad layouts fail without touching the outputs. */
  if (mdps_score(det, rgba, w, h, 2, 0, &untouched, NULL, 0, 0, NULL) != MDPS_ERR_INVALID_ARGUMENT ||
      untouched != -123.f)
    FAIL("2 channels were accepted or the output was written");
  if (mdps_score(det, rgba, w, h, 4, w, &untouched, NULL, 0, 0, NULL) != MDPS_ERR_INVALID_ARGUMENT)
    FAIL("a stride shorter than a row was accepted");
  if (mdps_score(det, rgba, w, h, 4, 0, &untouched, heat, 0, 5, NULL) != MDPS_ERR_INVALID_ARGUMENT)
    FAIL("an empty heat map size was accepted");

  /* Without a pixel threshold there is no mask; with one at the middle of
   * the map's range, the mask is exactly heat > threshold and has both values. */
  if (mdps_score(det, rgba, w, h, 4, 0, NULL, heat, S, S, NULL) != MDPS_OK)
    FAIL("score at model size failed: %s", mdps_last_error());
  if (mdps_last_defect_mask(det, mask, S, S) != MDPS_ERR_FAILED) FAIL("a mask without a pixel threshold");
  lo = hi = heat[0];
  for (k = 0; k < S * S; ++k) {
    lo = heat[k] < lo ? heat[k] : lo;
    hi = heat[k] > hi ? heat[k] : hi;
  }
  if (!(hi > lo)) FAIL("the heat map is constant (%g)", lo);
  o.pixel_threshold = 0.5f * (lo + hi);
  if (mdps_detector_create(&o, &det2) != MDPS_OK) FAIL("create with a pixel threshold: %s", mdps_last_error());
  if (mdps_score(det2, rgba, w, h, 4, 0, NULL, heat, S, S, NULL) != MDPS_OK)
    FAIL("score with a pixel threshold failed: %s", mdps_last_error());
  if (mdps_last_defect_mask(det2, mask, S, S) != MDPS_OK) FAIL("defect mask failed: %s", mdps_last_error());
  for (k = 0; k < S * S; ++k) {
    if (mask[k] != (heat[k] > o.pixel_threshold)) FAIL("mask pixel %d is %d for heat %g", k, mask[k], heat[k]);
    ones += mask[k];
  }
  if (ones == 0 || ones == S * S) FAIL("the mask at the middle threshold is uniform (%d ones)", ones);

  *score_out = score;
  rc = 0;
done:
  mdps_detector_destroy(det);
  mdps_detector_destroy(det2);
  mdps_detector_destroy(NULL);
  free(padded);
  free(heat);
  free(mask);
  return rc;
}
