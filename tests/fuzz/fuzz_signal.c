/* fuzz_signal.c — the signal validator on any BSON document (first byte
 * 0) or any extended JSON (first byte 1). Every reason must be valid UTF-8
 * (it is stored on the document and sent to Kafka), every valid signal
 * must convert to the Signal record and validate again from its own BSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/text.h"
#include "store/signal.h"

static void check(const bson_t *doc)
{
        par_signal_limits_t lim;
        par_signal_t s, again;
        par_error_t err;
        char id[64];

        par_signal_limits_default(&lim);
        par_signal_init(&s);
        par_signal_doc_id(doc, id, sizeof(id));
        if (!par_utf8_valid(id, strlen(id)))
                abort();
        if (par_signal_parse(&s, doc, &lim, &err)) {
                if (!par_utf8_valid(err.msg, strlen(err.msg)))
                        abort();
                return;
        }
        json_t *j = par_signal_to_json(&s, "00-0af7651916cd43dd8448eb211c80319c"
                                           "-b7ad6b7169203331-01");
        if (!j)
                abort();
        json_decref(j);
        bson_t out = BSON_INITIALIZER;
        par_signal_append_bson(&s, &out);
        par_signal_init(&again);
        if (par_signal_parse(&again, &out, &lim, &err))
                abort(); /* a valid signal must stay valid */
        par_signal_clear(&again);
        bson_destroy(&out);
        par_signal_clear(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        bson_t b;
        bson_error_t e;

        if (size < 2)
                return 0;
        if (data[0] & 1) {
                bson_t *doc =
                    bson_new_from_json(data + 1, (ssize_t)size - 1, &e);
                if (doc) {
                        check(doc);
                        bson_destroy(doc);
                }
        } else if (bson_init_static(&b, data + 1, size - 1) &&
                   bson_validate(&b, BSON_VALIDATE_NONE, NULL)) {
                check(&b);
        }
        return 0;
}
