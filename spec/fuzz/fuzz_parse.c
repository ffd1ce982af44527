/* libFuzzer target: core.parse(body, opts) at each level, unknown_keys mode, null choice, default or tight limits. */
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    harness_check(harness_state(), "parse", data, size);
    return 0;
}
