/* embed MODEL FEATURES IMAGE: scores one image through the mdps C interface
 * and prints its image score as a decimal number on the last line.
 * Build against the installed package:
 *   cc embed.c $(pkg-config --cflags --libs mdps) -lstb -lm -o embed */
#include <mdps/mdps_c.h>
#include <stb/stb_image.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  mdps_options opt;
  mdps_detector* det = NULL;
  unsigned char* pixels;
  float score = 0.f, *heat;
  int w, h, n, size, rc = 1;

  if (argc != 4) {
    fprintf(stderr, "usage: %s MODEL FEATURES IMAGE\n", argv[0]);
    return 2;
  }
  pixels = stbi_load(argv[3], &w, &h, &n, 3); /* the caller decodes: RGB, 8 bit */
  if (!pixels) {
    fprintf(stderr, "%s: %s\n", argv[3], stbi_failure_reason());
    return 1;
  }
  mdps_options_init(&opt);
  opt.unet_path = argv[1];
  opt.features_path = argv[2];
  if (mdps_detector_create(&opt, &det) != MDPS_OK) {
    fprintf(stderr, "mdps: %s\n", mdps_last_error());
    stbi_image_free(pixels);
    return 1;
  }
  size = mdps_image_size(det);
  heat = malloc(sizeof(float) * (size_t)w * (size_t)h); /* the heat map at the image's own size */
  if (heat && mdps_score(det, pixels, w, h, 3, 0, &score, heat, w, h, NULL) == MDPS_OK) {
    printf("mdps %s, model %dx%d, image %dx%d\n", mdps_version(), size, size, w, h);
    printf("%.6f\n", score);
    rc = 0;
  } else {
    fprintf(stderr, "mdps: %s\n", heat ? mdps_last_error() : "out of memory");
  }
  free(heat);
  mdps_detector_destroy(det);
  stbi_image_free(pixels);
  return rc;
}
