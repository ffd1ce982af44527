/* libFuzzer target: core.verify(body, header, secrets, tolerance, now): header up to the first newline, then the body. */
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    harness_check(harness_state(), "verify", data, size);
    return 0;
}
