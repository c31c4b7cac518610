// Placeholder until the runtime lands the real launcher.
#include <nanobind/nanobind.h>
NB_MODULE(_launcher, m) { m.attr("VERSION") = 0; }
