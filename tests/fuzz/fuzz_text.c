/* fuzz_text.c — the UTF-8 cutting and escaping helper every message and
 * log line goes through: outputs are valid UTF-8, within bounds, and a
 * logfmt value or escaped line never holds a newline. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char out[300], *s;
        size_t max, n;
        bool cut;

        if (size < 1)
                return 0;
        max = data[0];
        n = par_text_clip(out, sizeof(out), (const char *)data + 1, size - 1,
                          max, &cut);
        if (n > max || strlen(out) != n || !par_utf8_valid(out, n))
                abort();
        if (!cut && size - 1 <= max && n != size - 1)
                abort();
        s = malloc(size);
        if (!s)
                return 0;
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        par_text_logfmt(out, 1 + max % sizeof(out), s);
        if (strchr(out, '\n') || !par_utf8_valid(out, strlen(out)))
                abort();
        par_text_escape_controls(out, 1 + max % sizeof(out), s);
        if (strchr(out, '\n') || !par_utf8_valid(out, strlen(out)))
                abort();
        n = par_utf8_scrub(s);
        if (!par_utf8_valid(s, n))
                abort();
        free(s);
        return 0;
}
