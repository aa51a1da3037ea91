/*
 * lws.h — the one libwebsockets glue: what every user of libwebsockets in
 * Parallel (the observability server in obs/http, the CDP client in
 * browser/cdp) must do once per process before creating a context.
 *
 * libwebsockets has a single, process-wide log hook; whoever installs it
 * last wins. It is therefore installed here, once, with one level map, and
 * never by the modules that use lws.
 */
#ifndef PAR_NET_LWS_H
#define PAR_NET_LWS_H

/*
 * Routes libwebsockets' log through par_log (component "lws") instead of
 * stderr — library code does not print. lws errors become WARN and lws
 * warnings DEBUG: each of them is about a connection whose failure the
 * caller also reports, with context, as a par_error_t, so lws's line is
 * supporting detail. Notices and below are dropped. Idempotent and
 * thread-safe (pthread_once); call it before lws_create_context.
 */
void par_lws_init(void);

#endif
