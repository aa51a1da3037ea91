/*
 * seqwin_test.c — the ordered completion window only releases a position
 * once every earlier item has completed, whatever order parts complete in.
 */
#include <stdlib.h>
#include <string.h>

#include "seqwin.h"
#include "testutil.h"

static void test_order(void)
{
        par_seqwin_t *w;
        uint64_t s1, s2, s3, s4;
        const void *pos = NULL;
        size_t len = 0;

        REQUIRE(par_seqwin_new(&w, NULL) == PAR_OK);
        REQUIRE(!par_seqwin_push(w, "t1", 3, 1, &s1, NULL));
        REQUIRE(!par_seqwin_push(w, NULL, 0, 0, &s2, NULL)); /* no message */
        REQUIRE(!par_seqwin_push(w, "t3", 3, 1, &s3, NULL));
        REQUIRE(!par_seqwin_push(w, "t4", 3, 2, &s4, NULL));
        CHECK(s1 == 1 && s2 == 2 && s3 == 3 && s4 == 4);

        /* Later items completing first release nothing. */
        CHECK(par_seqwin_done(w, s3) == PAR_OK);
        CHECK(par_seqwin_advance(w, &pos, &len) == 0);
        CHECK(pos == NULL);
        CHECK(par_seqwin_done(w, s3) == PAR_ERR_NOTFOUND); /* duplicate */

        /* The head completing releases the prefix up to the next gap. */
        CHECK(par_seqwin_done(w, s1) == PAR_OK);
        CHECK(par_seqwin_advance(w, &pos, &len) == 3);
        CHECK(len == 3 && pos && !strcmp(pos, "t3"));
        CHECK(par_seqwin_size(w) == 1);
        CHECK(par_seqwin_oldest(w) == s4);

        /* Two parts: both needed. */
        CHECK(par_seqwin_done(w, s4) == PAR_OK);
        CHECK(par_seqwin_advance(w, &pos, &len) == 0);
        CHECK(par_seqwin_add_part(w, s4) == PAR_OK); /* a retry */
        CHECK(par_seqwin_done(w, s4) == PAR_OK);
        CHECK(par_seqwin_advance(w, &pos, &len) == 0);
        CHECK(par_seqwin_done(w, s4) == PAR_OK);
        CHECK(par_seqwin_advance(w, &pos, &len) == 1);
        CHECK(!strcmp(pos, "t4"));
        CHECK(par_seqwin_size(w) == 0 && par_seqwin_oldest(w) == 0);
        CHECK(par_seqwin_done(w, s1) == PAR_ERR_NOTFOUND);

        /* Position-less items advance without changing the position. */
        pos = NULL;
        REQUIRE(!par_seqwin_push(w, NULL, 0, 0, &s1, NULL));
        CHECK(par_seqwin_advance(w, &pos, &len) == 1 && pos == NULL);
        par_seqwin_destroy(w);
        par_seqwin_destroy(NULL);
}

/* Many items, completed in a scrambled order, across ring growth. */
static void test_scrambled(void)
{
        enum { N = 50000 };
        par_seqwin_t *w;
        uint64_t *seqs = malloc(N * sizeof(*seqs));
        size_t popped = 0;
        const void *pos;
        size_t len;
        char tok[32];
        unsigned rnd = 12345;

        REQUIRE(seqs);
        REQUIRE(par_seqwin_new(&w, NULL) == PAR_OK);
        for (int i = 0; i < N; i++) {
                snprintf(tok, sizeof(tok), "%d", i);
                REQUIRE(!par_seqwin_push(w, tok, strlen(tok) + 1, 1, &seqs[i],
                                         NULL));
        }
        /* Fisher–Yates with a fixed LCG. */
        for (int i = N - 1; i > 0; i--) {
                rnd = rnd * 1103515245u + 12345u;
                int j = (int)(rnd % (unsigned)(i + 1));
                uint64_t t = seqs[i];
                seqs[i] = seqs[j];
                seqs[j] = t;
        }
        for (int i = 0; i < N; i++) {
                uint64_t lowest = par_seqwin_oldest(w);
                CHECK(par_seqwin_done(w, seqs[i]) == PAR_OK);
                pos = NULL;
                popped += par_seqwin_advance(w, &pos, &len);
                if (pos) /* the released position is the last popped one */
                        CHECK(strtoull(pos, NULL, 10) + 1 ==
                              (popped ? popped : 1));
                if (seqs[i] != lowest)
                        CHECK(par_seqwin_oldest(w) == lowest);
        }
        CHECK(popped == N);
        CHECK(par_seqwin_size(w) == 0);
        par_seqwin_destroy(w);
        free(seqs);
}

TEST_MAIN(test_order, test_scrambled)
