/* tests/unit/support/fixtures.h — real DNS wire messages for unit tests.
 *
 * Captured once from a real authoritative server (knotd on loopback, zones in
 * tests/fixtures/zones/) by tests/fixtures/capture.py; never produced by our own encoder.
 * Each fixture is one query (as a client sent it) and the server's response to it.
 *
 * Names (zone example.com unless said; queries carry EDNS 1232 without DO unless said):
 *   a_example_com        example.com A            NOERROR, 1 A
 *   a_example_com_noedns example.com A            query without OPT
 *   a_example_com_do     example.com A            DO=1 (unsigned zone, no RRSIG)
 *   a_example_com_cd     example.com A            CD=1 in the query header
 *   a_mixed_case         ExAmPlE.CoM A            0x20 mixed-case qname
 *   aaaa_example_com     example.com AAAA
 *   mx_example_com       example.com MX           answer + glue A in additional
 *   ns_example_com       example.com NS           answer + glue in additional
 *   txt_example_com      txt.example.com TXT
 *   cname_chain          www.example.com A        CNAME -> web.example.com A
 *   cname_dangling       dangling.example.com A   CNAME to an out-of-zone name, no A
 *   cname_loop           loop1.example.com A      loop1 -> loop2 -> loop1
 *   nxdomain             nx.example.com A         NXDOMAIN + SOA
 *   nodata               example.com TXT          NOERROR, no answer, SOA in authority
 *   referral             www.sub.example.com A    NOERROR, NS in authority, glue
 *   large_txt            big.example.com TXT      answer of about 1,200 bytes
 *   many_a               many.example.com A       40 A records (~700 bytes)
 *   signed_a_do          signed.test A            DO=1, answer with RRSIG (knot-signed)
 *   signed_nx_do         nx.signed.test A         DO=1, NXDOMAIN with NSEC + RRSIGs
 *   refused              other.org A              REFUSED (not our zone)
 *   chaos_version        version.server CH TXT    CHAOS class answer
 *   signed_time          (no message) the unix time the signed zone's RRSIGs were captured
 */
#ifndef RC_TEST_FIXTURES_H
#define RC_TEST_FIXTURES_H

#include <stddef.h>
#include <stdint.h>

struct dns_fixture {
    const char *name;
    const uint8_t *query;
    size_t query_len;
    const uint8_t *resp;
    size_t resp_len;
};

/* The fixture called `name`; aborts the test program when there is none. */
const struct dns_fixture *fixture(const char *name);

/* All fixtures, terminated by an entry with name NULL. */
extern const struct dns_fixture dns_fixtures[];

/* Unix time at capture: RRSIGs of signed_* are valid around this instant. */
extern const uint32_t fixture_capture_time;

#endif
