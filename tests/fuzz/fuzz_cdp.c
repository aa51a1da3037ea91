/* fuzz_cdp.c — CDP message handling: any bytes as a message from the
 * browser. Whatever parses must be a JSON value jansson can print again
 * (valid UTF-8 throughout). */
#include <stdint.h>
#include <stdlib.h>

#include "browser/cdp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        json_error_t jerr;
        json_t *m = par_cdp_parse_message((const char *)data, size, &jerr);

        if (m) {
                char *s = json_dumps(m, JSON_ENCODE_ANY);
                if (!s)
                        abort();
                free(s);
                json_decref(m);
        }
        return 0;
}
