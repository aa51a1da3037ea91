/* fuzz_config.c — the config parser: any bytes as a properties file, then
 * the redacted dump, which must never print a secret value. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/config.h"
#include "base/log.h"
#include "msg/kafka.h"

static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void)argc;
        (void)argv;
        snprintf(path, sizeof(path), "/tmp/par-fuzz-config-%d.properties",
                 (int)getpid());
        par_log_set_level(PAR_LOG_OFF);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        par_config_t *cfg = NULL;
        par_error_t err;
        FILE *f = fopen(path, "w");
        char *dump = NULL;
        size_t len = 0;

        if (!f)
                return 0;
        fwrite(data, 1, size, f);
        fclose(f);
        if (par_config_new(&cfg, &err))
                abort();
        /* A secret the dump must hide whatever the file did. */
        par_config_set(cfg, "kafka.sasl.password", "FUZZSECRETVALUE", &err);
        par_config_load_file(cfg, path, &err);
        par_kafka_check_sizes(cfg, &err);
        FILE *m = open_memstream(&dump, &len);
        par_config_dump(cfg, m);
        fclose(m);
        /* Only when the input does not carry the marker itself: a file may
         * well put it in a value that is no secret (a host name). */
        if (memmem(dump, len, "FUZZSECRETVALUE", 15) &&
            !memmem(data, size, "FUZZSECRETVALUE", 15))
                abort();
        free(dump);
        par_config_destroy(cfg);
        unlink(path);
        return 0;
}
