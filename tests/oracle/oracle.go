// Command oracle is the Go interop oracle of the integration tests (test-only, never part
// of the product; SPEC §6). It reproduces, with the Go DNS library Debian ships
// (github.com/miekg/dns) and its XXH64 (github.com/cespare/xxhash), what a CoreDNS instance
// running the Go redis_cache plugin does with a shared Redis (SPEC §1):
//
//   - the key of a question: XXH64(seed) of qclass BE16, qtype BE16, DO byte, CD byte and
//     the qname as the Go library prints it (ASCII-lowercased, cut to 256 bytes), written
//     "<prefix>:<16 hex>";
//   - reading a value: "RCD2" + flags byte + message, or a legacy whole message, unpacked
//     with dns.Msg.Unpack;
//   - writing a value: "RCD2" + flags byte + dns.Msg.Pack() of a response without OPT.
//
// It is written from SPEC §1, not from the plugin's source. Build: tests/oracle/build.sh.
//
// Commands (output is line based: "word value..." per line; errors go to stderr as
// "oracle: ..." and exit 2, except where said):
//
//	oracle selftest
//	    Checks every key vector of SPEC §1.1; prints "ok N" or "FAIL ..." lines, exits 1 on
//	    a mismatch.
//	oracle key (--name NAME | --labels L1 L2 ... | --wire HEX) [--type A] [--class IN]
//	           [--do 0|1] [--cd 0|1] [--prefix cdrc] [--seed N]
//	    Prints the key. NAME is presentation format (escapes \. \DDD allowed; a missing
//	    trailing dot is added); --labels gives raw label bytes, where "\xHH" stands for one
//	    byte and "\\" for a backslash; --wire is an uncompressed wire name in hex.
//	oracle check-key-from-query --hex QUERY [--prefix P] [--seed N]
//	    Unpacks a query with dns.Msg.Unpack and prints "key K", "name N", "do D", "cd C"
//	    (DO from the query's OPT, CD from its header). Exit 1 when it does not unpack.
//	oracle keys-batch [--prefix P] [--seed N]
//	    Reads hex queries, one per line, on stdin; prints per line the key as above or
//	    "err MESSAGE".
//	oracle unpack [--hex VALUE] [--query HEXQUERY]
//	    Reads a stored value (binary from stdin unless --hex) and decodes it the Go plugin's
//	    way. Prints on success:
//	        ok
//	        format rcd2|legacy
//	        flagsbyte 0xNN            (rcd2 only)
//	        do 0|1                    (rcd2: flags bit 0; legacy: the OPT's DO bit)
//	        id N
//	        opcode QUERY
//	        rcode NOERROR
//	        hdr qr aa tc rd ra z ad cd   (only the bits that are set)
//	        question NAME CLASS TYPE     (one line per question)
//	        counts QD AN NS AR
//	        opt 0|1                   (an OPT RR present in the additional section)
//	        an|ns|ar RR               (each RR in presentation format, tabs as spaces)
//	        match yes|no REASON       (with --query: the question/DO/CD check of a read)
//	    On failure prints "err MESSAGE" and exits 1.
//	oracle pack --name Q [--type A] [--class IN] [--do 0|1] [--cd 0|1] [--rcode NOERROR]
//	           [--id N] [--aa] [--ad] [--tc] [--no-rd] [--no-ra] [--compress]
//	           [--answer RR]... [--ns RR]... [--extra RR]... [--legacy] [--flagsbyte N] [--hex]
//	           [--redis PORT --ex SECONDS [--prefix P] [--seed N]]
//	    Builds the response the Go plugin would store: QR=1, the flags asked for, no OPT;
//	    value "RCD2" + flags byte (DO) + dns.Msg.Pack(). --legacy writes the packed message
//	    alone, with an OPT carrying the DO bit when --do 1 (a legacy entry's DO is its OPT's).
//	    --flagsbyte writes that flags byte instead (reserved bits a future writer may set);
//	    --compress packs with name compression (dns.Msg.Compress, as after a Truncate).
//	    Writes the value to stdout (binary, or hex with --hex). With --redis it instead SETs
//	    it under the Go key (SET key value EX seconds) on 127.0.0.1:PORT and prints
//	    "key K" and "value HEX".
//	oracle go-read --port P --query HEXQUERY [--prefix P] [--seed N]
//	    A Go instance's read: the key from the query, GET on 127.0.0.1:P, the value decoded
//	    and checked against the query. Prints as unpack (with the match line), then
//	    "key K" and "value HEX"; "miss K" and exit 1 when the key is absent; "err ..." and
//	    exit 1 when the value does not decode.
//	oracle redis-get --port P KEY
//	    GET over RESP (plain TCP); prints the value in hex, or "nil".
//	oracle redis-set --port P [--ex N] KEY (--hex VALUE | value on stdin)
//	    SET (EX N when given); prints the reply.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash"
	"github.com/miekg/dns"
)

// ---- argument parsing --------------------------------------------------------------------

// opts holds "--flag value" pairs (repeatable), bare "--flag" switches and positionals.
type opts struct {
	vals  map[string][]string
	sw    map[string]bool
	pos   []string
	multi map[string][]string // --labels takes every following argument not starting "--"
}

var switches = map[string]bool{
	"--aa": true, "--ad": true, "--tc": true, "--no-rd": true, "--no-ra": true,
	"--compress": true, "--legacy": true, "--hex-out": true,
}

func parseArgs(args []string) (*opts, error) {
	o := &opts{vals: map[string][]string{}, sw: map[string]bool{}, multi: map[string][]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--labels":
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
				i++
				o.multi[a] = append(o.multi[a], args[i])
			}
		case switches[a]:
			o.sw[a] = true
		case a == "--hex":
			// --hex is a switch for pack (hex output) and takes a value elsewhere
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
				i++
				o.vals[a] = append(o.vals[a], args[i])
			} else {
				o.sw["--hex-out"] = true
			}
		case strings.HasPrefix(a, "--"):
			if i+1 >= len(args) {
				return nil, fmt.Errorf("%s needs a value", a)
			}
			i++
			o.vals[a] = append(o.vals[a], args[i])
		default:
			o.pos = append(o.pos, a)
		}
	}
	return o, nil
}

func (o *opts) get(name, def string) string {
	if v := o.vals[name]; len(v) > 0 {
		return v[len(v)-1]
	}
	return def
}

func (o *opts) has(name string) bool { return len(o.vals[name]) > 0 }

func (o *opts) boolv(name string) (bool, error) {
	switch o.get(name, "0") {
	case "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	}
	return false, fmt.Errorf("%s must be 0 or 1", name)
}

func (o *opts) seed() (uint64, error) {
	s := o.get("--seed", "0")
	return strconv.ParseUint(s, 0, 64)
}

func parseType(s string) (uint16, error) {
	if t, ok := dns.StringToType[strings.ToUpper(s)]; ok {
		return t, nil
	}
	if u := strings.ToUpper(s); strings.HasPrefix(u, "TYPE") {
		n, err := strconv.ParseUint(u[4:], 10, 16)
		return uint16(n), err
	}
	return 0, fmt.Errorf("unknown type %q", s)
}

func parseClass(s string) (uint16, error) {
	if c, ok := dns.StringToClass[strings.ToUpper(s)]; ok {
		return c, nil
	}
	if u := strings.ToUpper(s); strings.HasPrefix(u, "CLASS") {
		n, err := strconv.ParseUint(u[5:], 10, 16)
		return uint16(n), err
	}
	return 0, fmt.Errorf("unknown class %q", s)
}

func parseRcode(s string) (int, error) {
	if r, ok := dns.StringToRcode[strings.ToUpper(s)]; ok {
		return r, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("unknown rcode %q", s)
	}
	return n, nil
}

// ---- the key (SPEC §1.1) -----------------------------------------------------------------

const (
	p1 uint64 = 11400714785074694791
	p2 uint64 = 14029467366897019727
)

// newSeeded returns an XXH64 digest started with `seed`. The packaged xxhash has no seeded
// constructor; its state encoding (MarshalBinary: magic, v1..v4, total, all little-endian,
// then the 32-byte buffer) lets us start from the seeded accumulators (v1 = seed+P1+P2,
// v2 = seed+P2, v3 = seed, v4 = seed-P1, nothing written yet), and the library's own code
// does all of the hashing. selftest checks it against refXXH64.
func newSeeded(seed uint64) *xxhash.Digest {
	d := xxhash.New()
	if seed == 0 {
		return d
	}
	st := make([]byte, 0, 4+8*5+32)
	st = append(st, "xxh\x06"...)
	for _, v := range []uint64{seed + p1 + p2, seed + p2, seed, seed - p1, 0} {
		st = binary.LittleEndian.AppendUint64(st, v)
	}
	st = append(st, make([]byte, 32)...)
	if err := d.UnmarshalBinary(st); err != nil {
		panic(err)
	}
	return d
}

// refXXH64 is a plain transcription of the XXH64 algorithm, used only by selftest to check
// newSeeded on inputs long enough to use all four accumulators.
func refXXH64(seed uint64, b []byte) uint64 {
	const p3, p4, p5 uint64 = 1609587929392839161, 9650029242287828579, 2870177450012600261
	rotl := func(x uint64, r uint) uint64 { return x<<r | x>>(64-r) }
	round := func(acc, in uint64) uint64 { return rotl(acc+in*p2, 31) * p1 }
	merge := func(h, v uint64) uint64 { return (h^round(0, v))*p1 + p4 }
	n := uint64(len(b))
	var h uint64
	if len(b) >= 32 {
		v1, v2, v3, v4 := seed+p1+p2, seed+p2, seed, seed-p1
		for len(b) >= 32 {
			v1 = round(v1, binary.LittleEndian.Uint64(b[0:]))
			v2 = round(v2, binary.LittleEndian.Uint64(b[8:]))
			v3 = round(v3, binary.LittleEndian.Uint64(b[16:]))
			v4 = round(v4, binary.LittleEndian.Uint64(b[24:]))
			b = b[32:]
		}
		h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)
		h = merge(merge(merge(merge(h, v1), v2), v3), v4)
	} else {
		h = seed + p5
	}
	h += n
	for ; len(b) >= 8; b = b[8:] {
		h = rotl(h^round(0, binary.LittleEndian.Uint64(b)), 27)*p1 + p4
	}
	if len(b) >= 4 {
		h = rotl(h^uint64(binary.LittleEndian.Uint32(b))*p1, 23)*p2 + p3
		b = b[4:]
	}
	for _, c := range b {
		h = rotl(h^uint64(c)*p5, 11) * p1
	}
	h ^= h >> 33
	h *= p2
	h ^= h >> 29
	h *= p3
	h ^= h >> 32
	return h
}

// goKey is the key the Go plugin computes for a question whose name the Go DNS library
// printed as `name`.
func goKey(name string, qtype, qclass uint16, do, cd bool, prefix string, seed uint64) string {
	var hdr [6]byte
	binary.BigEndian.PutUint16(hdr[0:], qclass)
	binary.BigEndian.PutUint16(hdr[2:], qtype)
	if do {
		hdr[4] = 1
	}
	if cd {
		hdr[5] = 1
	}
	lname := []byte(name)
	for i, b := range lname {
		if b >= 'A' && b <= 'Z' {
			lname[i] = b + ('a' - 'A')
		}
	}
	if len(lname) > 256 {
		lname = lname[:256]
	}
	d := newSeeded(seed)
	d.Write(hdr[:])
	d.Write(lname)
	prefix = strings.TrimSuffix(prefix, ":")
	sum := fmt.Sprintf("%016x", d.Sum64())
	if prefix == "" {
		return sum
	}
	return prefix + ":" + sum
}

// nameFromWire prints an uncompressed wire name the Go library's way.
func nameFromWire(wire []byte) (string, error) {
	s, off, err := dns.UnpackDomainName(wire, 0)
	if err != nil {
		return "", err
	}
	if off != len(wire) {
		return "", fmt.Errorf("%d bytes after the name", len(wire)-off)
	}
	return s, nil
}

// wireFromLabels builds a wire name from raw labels ("\xHH" = one byte, "\\" = '\').
func wireFromLabels(labels []string) ([]byte, error) {
	var w []byte
	for _, l := range labels {
		var b []byte
		for i := 0; i < len(l); i++ {
			if l[i] == '\\' && i+1 < len(l) && l[i+1] == '\\' {
				b = append(b, '\\')
				i++
			} else if l[i] == '\\' && i+3 < len(l) && l[i+1] == 'x' {
				v, err := strconv.ParseUint(l[i+2:i+4], 16, 8)
				if err != nil {
					return nil, fmt.Errorf("bad escape in label %q", l)
				}
				b = append(b, byte(v))
				i += 3
			} else {
				b = append(b, l[i])
			}
		}
		if len(b) == 0 || len(b) > 63 {
			return nil, fmt.Errorf("label %q: length %d", l, len(b))
		}
		w = append(w, byte(len(b)))
		w = append(w, b...)
	}
	return append(w, 0), nil
}

// canonicalName turns a presentation name into what the Go library prints for it once it
// went through the wire.
func canonicalName(s string) (string, error) {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(s), buf, 0, nil, false)
	if err != nil {
		return "", err
	}
	return nameFromWire(buf[:n])
}

// nameFromOpts reads --name, --labels or --wire.
func nameFromOpts(o *opts) (string, error) {
	switch {
	case len(o.multi["--labels"]) > 0:
		w, err := wireFromLabels(o.multi["--labels"])
		if err != nil {
			return "", err
		}
		return nameFromWire(w)
	case o.has("--wire"):
		w, err := hex.DecodeString(o.get("--wire", ""))
		if err != nil {
			return "", err
		}
		return nameFromWire(w)
	case o.has("--name"):
		return canonicalName(o.get("--name", ""))
	}
	return "", errors.New("one of --name, --labels, --wire is needed")
}

func cmdKey(o *opts) error {
	name, err := nameFromOpts(o)
	if err != nil {
		return err
	}
	qt, err := parseType(o.get("--type", "A"))
	if err != nil {
		return err
	}
	qc, err := parseClass(o.get("--class", "IN"))
	if err != nil {
		return err
	}
	do, err := o.boolv("--do")
	if err != nil {
		return err
	}
	cd, err := o.boolv("--cd")
	if err != nil {
		return err
	}
	seed, err := o.seed()
	if err != nil {
		return err
	}
	fmt.Println(goKey(name, qt, qc, do, cd, o.get("--prefix", "cdrc"), seed))
	return nil
}

// keyFromQuery is what the Go plugin does on a read: unpack, take the first question,
// DO from the OPT, CD from the header.
func keyFromQuery(wire []byte, prefix string, seed uint64) (key string, m *dns.Msg, err error) {
	m = new(dns.Msg)
	if err = m.Unpack(wire); err != nil {
		return "", nil, err
	}
	if len(m.Question) == 0 {
		return "", nil, errors.New("no question")
	}
	q := m.Question[0]
	do := false
	if opt := m.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	return goKey(q.Name, q.Qtype, q.Qclass, do, m.CheckingDisabled, prefix, seed), m, nil
}

func cmdCheckKeyFromQuery(o *opts) error {
	wire, err := hex.DecodeString(o.get("--hex", ""))
	if err != nil {
		return err
	}
	seed, err := o.seed()
	if err != nil {
		return err
	}
	key, m, err := keyFromQuery(wire, o.get("--prefix", "cdrc"), seed)
	if err != nil {
		fmt.Printf("err %v\n", err)
		os.Exit(1)
	}
	do := m.IsEdns0() != nil && m.IsEdns0().Do()
	fmt.Printf("key %s\nname %s\ndo %d\ncd %d\n", key, m.Question[0].Name, b2i(do),
		b2i(m.CheckingDisabled))
	return nil
}

func cmdKeysBatch(o *opts) error {
	seed, err := o.seed()
	if err != nil {
		return err
	}
	prefix := o.get("--prefix", "cdrc")
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		wire, err := hex.DecodeString(line)
		if err != nil {
			fmt.Fprintf(out, "err %v\n", err)
			continue
		}
		key, _, err := keyFromQuery(wire, prefix, seed)
		if err != nil {
			fmt.Fprintf(out, "err %v\n", err)
			continue
		}
		fmt.Fprintln(out, key)
	}
	return in.Err()
}

// ---- selftest: SPEC §1.1 vectors -----------------------------------------------------------

type vector struct {
	name   string   // presentation name, or "" when labels is set
	labels []string // raw labels
	qtype  uint16
	qclass uint16
	do, cd bool
	seed   uint64
	want   string
}

var vectors = []vector{
	{name: "example.com.", qtype: dns.TypeA, want: "cdrc:fdef38255ee550ba"},
	{name: "EXAMPLE.COM.", qtype: dns.TypeA, want: "cdrc:fdef38255ee550ba"},
	{name: "example.com.", qtype: dns.TypeA, do: true, want: "cdrc:f683c51c295893b6"},
	{name: "example.com.", qtype: dns.TypeA, cd: true, want: "cdrc:c67d238979651d44"},
	{name: "example.com.", qtype: dns.TypeAAAA, want: "cdrc:162a08d167302bde"},
	{name: ".", qtype: dns.TypeNS, want: "cdrc:236fb91508e7d01f"},
	{name: "version.bind.", qtype: dns.TypeTXT, qclass: dns.ClassCHAOS,
		want: "cdrc:459714b3f6d4c964"},
	{name: "www.some-long-subdomain.example.org.", qtype: dns.TypeA,
		want: "cdrc:6b7484ff55b5caa5"},
	{name: "example.com.", qtype: dns.TypeA, seed: 0x9e3779b97f4a7c15,
		want: "cdrc:c2a5dc566be14503"},
	{labels: []string{"a.b", "example"}, qtype: dns.TypeA, want: "cdrc:2d1a395f0912f4ae"},
	{labels: []string{"a b", "example"}, qtype: dns.TypeA, want: "cdrc:b776b4cfc133100b"},
	{labels: []string{"x\\x01y", "example"}, qtype: dns.TypeA, want: "cdrc:909d7c6d4bda74f6"},
	{labels: []string{"x\\xff", "example"}, qtype: dns.TypeA, want: "cdrc:cfb764c16f2aa1a5"},
	{labels: []string{"a@b;c(d)e\"f\\\\g'h", "example"}, qtype: dns.TypeA,
		want: "cdrc:5165e8c97ca4781f"},
	{labels: []string{"Mixed$Case~!*", "example"}, qtype: dns.TypeA,
		want: "cdrc:d404dae5c4834bf5"},
}

func cmdSelftest() error {
	fails := 0
	for i, v := range vectors {
		qc := v.qclass
		if qc == 0 {
			qc = dns.ClassINET
		}
		var name string
		var err error
		if v.labels != nil {
			var w []byte
			if w, err = wireFromLabels(v.labels); err == nil {
				name, err = nameFromWire(w)
			}
		} else {
			name, err = canonicalName(v.name)
		}
		if err != nil {
			fmt.Printf("FAIL %d: %v\n", i, err)
			fails++
			continue
		}
		// Also the way a read sees it: a packed query unpacked again.
		q := new(dns.Msg)
		q.Question = []dns.Question{{Name: name, Qtype: v.qtype, Qclass: qc}}
		q.CheckingDisabled = v.cd
		if v.do {
			q.SetEdns0(1232, true)
		}
		wire, err := q.Pack()
		var viaQuery string
		if err == nil {
			viaQuery, _, err = keyFromQuery(wire, "cdrc", v.seed)
		}
		got := goKey(name, v.qtype, qc, v.do, v.cd, "cdrc", v.seed)
		if got != v.want || err != nil || viaQuery != v.want {
			fmt.Printf("FAIL %d %s: got %s via query %s (%v), want %s\n", i, name, got,
				viaQuery, err, v.want)
			fails++
			continue
		}
		fmt.Printf("ok %d %s %s\n", i, name, got)
	}
	// the seeded digest against the reference, on every length up to 300 bytes
	data := make([]byte, 300)
	for i := range data {
		data[i] = byte(i*7 + 3)
	}
	for _, seed := range []uint64{0, 1, 0x9e3779b97f4a7c15, ^uint64(0)} {
		for n := 0; n <= len(data); n++ {
			d := newSeeded(seed)
			d.Write(data[:n])
			if d.Sum64() != refXXH64(seed, data[:n]) {
				fmt.Printf("FAIL seeded xxhash seed %#x len %d\n", seed, n)
				fails++
			}
		}
	}
	if xxhash.Sum64(data) != refXXH64(0, data) {
		fmt.Println("FAIL reference xxhash")
		fails++
	}
	// prefix rules: one trailing ':' trimmed, "" gives no colon
	if k := goKey("example.com.", dns.TypeA, dns.ClassINET, false, false, "cdrc:", 0); k !=
		"cdrc:fdef38255ee550ba" {
		fmt.Printf("FAIL prefix trim: %s\n", k)
		fails++
	}
	if k := goKey("example.com.", dns.TypeA, dns.ClassINET, false, false, "", 0); k !=
		"fdef38255ee550ba" {
		fmt.Printf("FAIL empty prefix: %s\n", k)
		fails++
	}
	if fails > 0 {
		return fmt.Errorf("%d selftest failures", fails)
	}
	fmt.Println("selftest ok")
	return nil
}

// ---- values (SPEC §1.2) ------------------------------------------------------------------

const maxValue = 65535 + 5

type decoded struct {
	m      *dns.Msg
	legacy bool
	flags  byte
	do     bool
}

// decodeValue applies the read rules: RCD2 prefix -> flags byte and the message from byte 5;
// else the whole value is a legacy message whose DO is its OPT's.
func decodeValue(v []byte) (*decoded, error) {
	if len(v) == 0 {
		return nil, errors.New("empty value")
	}
	if len(v) > maxValue {
		return nil, fmt.Errorf("value of %d bytes", len(v))
	}
	d := &decoded{m: new(dns.Msg)}
	msg := v
	if len(v) >= 4 && string(v[:4]) == "RCD2" {
		if len(v) < 5 {
			return nil, errors.New("bare RCD2")
		}
		d.flags = v[4]
		d.do = v[4]&1 != 0
		msg = v[5:]
	} else {
		d.legacy = true
	}
	if err := d.m.Unpack(msg); err != nil {
		return nil, err
	}
	if d.legacy {
		if opt := d.m.IsEdns0(); opt != nil {
			d.do = opt.Do()
		}
	}
	return d, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func hdrBits(m *dns.Msg) string {
	var s []string
	add := func(on bool, n string) {
		if on {
			s = append(s, n)
		}
	}
	add(m.Response, "qr")
	add(m.Authoritative, "aa")
	add(m.Truncated, "tc")
	add(m.RecursionDesired, "rd")
	add(m.RecursionAvailable, "ra")
	add(m.Zero, "z")
	add(m.AuthenticatedData, "ad")
	add(m.CheckingDisabled, "cd")
	return strings.Join(s, " ")
}

func rrText(rr dns.RR) string {
	return strings.ReplaceAll(rr.String(), "\t", " ")
}

func hasOPT(m *dns.Msg) bool {
	for _, rr := range m.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			return true
		}
	}
	for _, rr := range append(append([]dns.RR{}, m.Answer...), m.Ns...) {
		if rr.Header().Rrtype == dns.TypeOPT {
			return true
		}
	}
	return false
}

// matchQuery is the check a read makes of a stored entry against the query it answers.
func matchQuery(d *decoded, qwire []byte) string {
	q := new(dns.Msg)
	if err := q.Unpack(qwire); err != nil {
		return "no query does not unpack: " + err.Error()
	}
	if len(q.Question) != 1 || len(d.m.Question) != 1 {
		return "no question count"
	}
	qq, eq := q.Question[0], d.m.Question[0]
	qdo := q.IsEdns0() != nil && q.IsEdns0().Do()
	switch {
	case !d.m.Response:
		return "no QR=0"
	case !strings.EqualFold(qq.Name, eq.Name):
		return "no name " + eq.Name
	case qq.Qtype != eq.Qtype:
		return "no qtype"
	case qq.Qclass != eq.Qclass:
		return "no qclass"
	case qdo != d.do:
		return "no DO"
	case q.CheckingDisabled != d.m.CheckingDisabled:
		return "no CD"
	}
	return "yes"
}

func readInput(o *opts) ([]byte, error) {
	if o.has("--hex") {
		return hex.DecodeString(strings.TrimSpace(o.get("--hex", "")))
	}
	return io.ReadAll(os.Stdin)
}

func cmdUnpack(o *opts) error {
	v, err := readInput(o)
	if err != nil {
		return err
	}
	var qw []byte
	if o.has("--query") {
		if qw, err = hex.DecodeString(o.get("--query", "")); err != nil {
			return err
		}
	}
	d, err := decodeValue(v)
	if err != nil {
		fmt.Printf("err %v\n", err)
		os.Exit(1)
	}
	printDecoded(d, qw)
	return nil
}

// printDecoded prints a decoded value in the format documented at the top.
func printDecoded(d *decoded, qwire []byte) {
	m := d.m
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintln(w, "ok")
	if d.legacy {
		fmt.Fprintln(w, "format legacy")
	} else {
		fmt.Fprintln(w, "format rcd2")
		fmt.Fprintf(w, "flagsbyte 0x%02x\n", d.flags)
	}
	fmt.Fprintf(w, "do %d\n", b2i(d.do))
	fmt.Fprintf(w, "id %d\n", m.Id)
	fmt.Fprintf(w, "opcode %s\n", dns.OpcodeToString[m.Opcode])
	fmt.Fprintf(w, "rcode %s\n", dns.RcodeToString[m.Rcode])
	fmt.Fprintf(w, "hdr %s\n", hdrBits(m))
	for _, q := range m.Question {
		fmt.Fprintf(w, "question %s %s %s\n", q.Name, dns.Class(q.Qclass), dns.Type(q.Qtype))
	}
	fmt.Fprintf(w, "counts %d %d %d %d\n", len(m.Question), len(m.Answer), len(m.Ns),
		len(m.Extra))
	fmt.Fprintf(w, "opt %d\n", b2i(hasOPT(m)))
	for _, rr := range m.Answer {
		fmt.Fprintf(w, "an %s\n", rrText(rr))
	}
	for _, rr := range m.Ns {
		fmt.Fprintf(w, "ns %s\n", rrText(rr))
	}
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			fmt.Fprintf(w, "ar %s\n", rrText(rr))
		}
	}
	if qwire != nil {
		fmt.Fprintf(w, "match %s\n", matchQuery(d, qwire))
	}
}

// cmdGoRead does what a Go instance does with a query: the key from the query, GET, decode
// the value and check it against the query.
func cmdGoRead(o *opts) error {
	qw, err := hex.DecodeString(o.get("--query", ""))
	if err != nil {
		return err
	}
	seed, err := o.seed()
	if err != nil {
		return err
	}
	key, _, err := keyFromQuery(qw, o.get("--prefix", "cdrc"), seed)
	if err != nil {
		fmt.Printf("err query: %v\n", err)
		os.Exit(1)
	}
	v, err := redisDo(o.get("--port", "6379"), "GET", key)
	if err == errNil {
		fmt.Printf("miss %s\n", key)
		os.Exit(1)
	}
	if err != nil {
		return err
	}
	d, err := decodeValue([]byte(v))
	if err != nil {
		fmt.Printf("err %v\nkey %s\n", err, key)
		os.Exit(1)
	}
	printDecoded(d, qw)
	fmt.Printf("key %s\nvalue %x\n", key, v)
	return nil
}

func parseRRs(list []string) ([]dns.RR, error) {
	var out []dns.RR
	for _, s := range list {
		rr, err := dns.NewRR(s)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", s, err)
		}
		if rr == nil {
			return nil, fmt.Errorf("%q: empty RR", s)
		}
		out = append(out, rr)
	}
	return out, nil
}

func cmdPack(o *opts) error {
	name, err := nameFromOpts(o)
	if err != nil {
		return err
	}
	qt, err := parseType(o.get("--type", "A"))
	if err != nil {
		return err
	}
	qc, err := parseClass(o.get("--class", "IN"))
	if err != nil {
		return err
	}
	do, err := o.boolv("--do")
	if err != nil {
		return err
	}
	cd, err := o.boolv("--cd")
	if err != nil {
		return err
	}
	rcode, err := parseRcode(o.get("--rcode", "NOERROR"))
	if err != nil {
		return err
	}
	id, err := strconv.ParseUint(o.get("--id", "4242"), 0, 16)
	if err != nil {
		return err
	}
	m := new(dns.Msg)
	m.Id = uint16(id)
	m.Question = []dns.Question{{Name: name, Qtype: qt, Qclass: qc}}
	m.Response = true
	m.Opcode = dns.OpcodeQuery
	m.Rcode = rcode
	m.Authoritative = o.sw["--aa"]
	m.AuthenticatedData = o.sw["--ad"]
	m.Truncated = o.sw["--tc"]
	m.RecursionDesired = !o.sw["--no-rd"]
	m.RecursionAvailable = !o.sw["--no-ra"]
	m.CheckingDisabled = cd
	m.Compress = o.sw["--compress"]
	if m.Answer, err = parseRRs(o.vals["--answer"]); err != nil {
		return err
	}
	if m.Ns, err = parseRRs(o.vals["--ns"]); err != nil {
		return err
	}
	if m.Extra, err = parseRRs(o.vals["--extra"]); err != nil {
		return err
	}
	var value []byte
	if o.sw["--legacy"] {
		if do {
			m.SetEdns0(1232, true)
		}
		if value, err = m.Pack(); err != nil {
			return err
		}
	} else {
		wire, err := m.Pack()
		if err != nil {
			return err
		}
		fb := uint64(b2i(do))
		if o.has("--flagsbyte") {
			// a future writer's flags byte: other bits set, DO still bit 0
			if fb, err = strconv.ParseUint(o.get("--flagsbyte", ""), 0, 8); err != nil {
				return err
			}
		}
		value = append([]byte("RCD2"), byte(fb))
		value = append(value, wire...)
	}
	if o.has("--redis") {
		seed, err := o.seed()
		if err != nil {
			return err
		}
		key := goKey(name, qt, qc, do, cd, o.get("--prefix", "cdrc"), seed)
		reply, err := redisDo(o.get("--redis", ""), "SET", key, string(value), "EX",
			o.get("--ex", "300"))
		if err != nil {
			return err
		}
		if reply != "OK" {
			return fmt.Errorf("SET replied %q", reply)
		}
		fmt.Printf("key %s\nvalue %x\n", key, value)
		return nil
	}
	if o.sw["--hex-out"] {
		fmt.Printf("%x\n", value)
		return nil
	}
	_, err = os.Stdout.Write(value)
	return err
}

// ---- a minimal RESP client (plain TCP, one command per connection) -----------------------

var errNil = errors.New("nil")

func redisDo(port string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		if n < 0 {
			return "", errNil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

func cmdRedisGet(o *opts) error {
	if len(o.pos) != 1 {
		return errors.New("redis-get --port P KEY")
	}
	v, err := redisDo(o.get("--port", "6379"), "GET", o.pos[0])
	if err == errNil {
		fmt.Println("nil")
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Printf("%x\n", v)
	return nil
}

func cmdRedisSet(o *opts) error {
	if len(o.pos) != 1 {
		return errors.New("redis-set --port P [--ex N] KEY (--hex V | stdin)")
	}
	v, err := readInput(o)
	if err != nil {
		return err
	}
	args := []string{"SET", o.pos[0], string(v)}
	if o.has("--ex") {
		args = append(args, "EX", o.get("--ex", ""))
	}
	reply, err := redisDo(o.get("--port", "6379"), args...)
	if err != nil {
		return err
	}
	fmt.Println(reply)
	return nil
}

// ---- main --------------------------------------------------------------------------------

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: oracle selftest|key|check-key-from-query|keys-batch|"+
			"unpack|pack|go-read|redis-get|redis-set [options]")
		os.Exit(2)
	}
	o, err := parseArgs(os.Args[2:])
	if err == nil {
		switch os.Args[1] {
		case "selftest":
			err = cmdSelftest()
			if err != nil {
				fmt.Println(err)
				os.Exit(1)
			}
		case "key":
			err = cmdKey(o)
		case "check-key-from-query":
			err = cmdCheckKeyFromQuery(o)
		case "keys-batch":
			err = cmdKeysBatch(o)
		case "unpack":
			err = cmdUnpack(o)
		case "pack":
			err = cmdPack(o)
		case "go-read":
			err = cmdGoRead(o)
		case "redis-get":
			err = cmdRedisGet(o)
		case "redis-set":
			err = cmdRedisSet(o)
		default:
			err = fmt.Errorf("unknown command %q", os.Args[1])
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "oracle: %v\n", err)
		os.Exit(2)
	}
}
