/* libFuzzer target: core.decode(s, opts) with the default or a false null, default or tight limits. */
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    harness_check(harness_state(), "decode", data, size);
    return 0;
}
