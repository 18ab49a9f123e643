/* src/server/forward_health.c — upstream health for the forward client, as CoreDNS's
 * max_fails and health_check: a failed client try starts probing its upstream (a probe is
 * a request with no waiters, one try, FWD_HC_TIMEOUT); failed probes count fails, a reply
 * clears them; more than max_fails marks the upstream down and the walk skips it. Every
 * worker has its own forward instance, so its own health state.
 */
#include <stdint.h>
#include <string.h>

#include "server/forward_internal.h"

bool fwd_host_down(const struct fwd *f, int i)
{
    return f->o.max_fails > 0 && f->host[i].fails > f->o.max_fails;
}

static void probe_start(struct fwd_host *h);

/* A client try on upstream i failed (timeout, refused, reset): health checking starts
 * unless it runs already, as CoreDNS's proxy.Healthcheck(). */
void fwd_host_failed(struct fwd *f, int i)
{
    struct fwd_host *h = &f->host[i];
    if (f->o.max_fails == 0 || !(f->o.health_check > 0) || f->closing || h->probing) return;
    h->probing = true;
    probe_start(h);
}

void fwd_probe_done(struct fwd_host *h, bool ok)
{
    struct fwd *f = h->f;
    if (ok) {
        h->fails = 0;
        h->probing = false;
        return;
    }
    if (h->fails < UINT32_MAX) h->fails++;
    f->st.hc_failures[h->idx]++;
    if (f->closing) {
        h->probing = false;
        return;
    }
    ev_timer_set(&h->hc_t, f->o.health_check, 0.);
    ev_timer_start(f->loop, &h->hc_t);
}

void fwd_on_hc_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    probe_start(w->data);
}

/* One health probe of h: the health_check domain, type NS, RD unless no_rec, over TCP
 * with force_tcp; one try of FWD_HC_TIMEOUT. */
static void probe_start(struct fwd_host *h)
{
    struct fwd *f = h->f;
    struct fwd_req *r = f->closing ? NULL : fwd_req_get(f);
    if (!r) {
        h->probing = false;
        return;
    }
    struct dns_question q;
    memset(&q, 0, sizeof q);
    q.name_len = (uint16_t)dns_name_from_text(f->o.hc_domain, q.name);
    if (q.name_len == 0) q.name_len = 1; /* "." */
    memcpy(q.name_lc, q.name, q.name_len);
    q.qtype = DNS_T_NS;
    q.qclass = DNS_C_IN;
    q.flags = f->o.hc_no_rec ? 0 : DNS_F_RD;
    fwd_req_init(f, r, &q, 0);
    r->probe = h;
    r->start_tcp = f->o.force_tcp;
    fwd_try_next(r);
}
