// Compiled by the fast_math.* tests (tests/CMakeLists.txt) with -ffast-math
// and the like: pdrop/config.hpp must refuse it, naming the flags, unless
// PDROP_ALLOW_FAST_MATH is defined.
#include "pdrop/config.hpp"

int main() { return 0; }
