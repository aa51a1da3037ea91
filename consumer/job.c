/*
 * job.c — releasing a job. A job may be dropped anywhere (revoke, shutdown,
 * a failed enqueue) while it keeps a claim for its local retry; that claim
 * must not stay leased until it lapses, so it goes to the renewer to give
 * back.
 */
#include <stdlib.h>

#include "job.h"

void job_free(void *p)
{
        job_t *j = p;
        if (!j)
                return;
        if (j->holds_claim && j->prev_owner[0])
                holds_release_later(j->holds, j->id, j->prev_owner);
        json_decref(j->signal);
        free(j->raw);
        free(j);
}
