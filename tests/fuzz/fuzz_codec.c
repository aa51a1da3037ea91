/* fuzz_codec.c — the Avro decoders: any bytes, as any schema or none.
 * A value that decodes must encode again (the codec's own JSON is valid
 * input for it). */
#include <stdint.h>
#include <stdlib.h>

#include "msg/codec.h"

static par_codec_t *codec;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        par_error_t err;
        (void)argc;
        (void)argv;
        if (par_codec_new(&codec, &err))
                abort();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *const expect[] = {
            NULL,           PAR_SCHEMA_SIGNAL, PAR_SCHEMA_RESULT,
            PAR_SCHEMA_DLQ, PAR_SCHEMA_WORKER, PAR_SCHEMA_METRICS};
        json_t *v = NULL;
        const char *name = NULL;
        par_error_t err;

        if (size < 1)
                return 0;
        const char *want = expect[data[0] % 6];
        if (par_codec_decode(codec, data + 1, size - 1, want, &v, &name,
                             &err) == PAR_OK) {
                void *buf = NULL;
                size_t len = 0;
                if (par_codec_encode(codec, name, v, &buf, &len, &err))
                        abort(); /* decoded but cannot be re-encoded */
                free(buf);
                json_decref(v);
        }
        return 0;
}
