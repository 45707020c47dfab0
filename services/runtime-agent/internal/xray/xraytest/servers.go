package xraytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// StartTLSDest starts a TLS 1.3-only HTTPS server on a loopback port with a
// fresh self-signed certificate for serverNames, speaking h2 and http/1.1,
// and returns its host:port. It stands in for the real site a REALITY
// inbound borrows its handshake from ("dest"), which also answers clients
// REALITY does not authenticate. It is closed in t.Cleanup.
func StartTLSDest(t testing.TB, serverNames ...string) string {
	t.Helper()
	cert, err := selfSigned(serverNames)
	if err != nil {
		t.Fatalf("making tls dest certificate: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, "<html><body>dest %s</body></html>", r.Proto)
	}))
	srv.EnableHTTP2 = true
	// REALITY opens and drops dest connections as part of its handshake;
	// the resulting handshake errors are expected noise.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func selfSigned(names []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "vpnfleet test dest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("creating certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// TargetBody is what an HTTP target answers on "/".
const TargetBody = "hello through the tunnel"

// StartHTTPTarget starts a plain HTTP server on a loopback port, the site
// tests fetch through a tunnel, and returns its base URL. "/" answers
// TargetBody; "/bytes?n=N" answers N bytes, to move a known amount of
// traffic; "/stream?n=N&rate=R" answers N bytes (up to 4 GiB) of
// StreamByte at about R bytes per second (R=0: as fast as it can), a long
// download over one connection. It is closed in t.Cleanup.
func StartHTTPTarget(t testing.TB) string {
	t.Helper()
	return StartHTTPTargetOn(t, "127.0.0.1:0")
}

// StartHTTPTargetOn is StartHTTPTarget listening on addr (host:port),
// e.g. a tunnel interface's own address.
func StartHTTPTargetOn(t testing.TB, addr string) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(TargetBody))
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 || n > 64<<20 {
			http.Error(w, "n must be 0..64MiB", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		chunk := make([]byte, 32<<10)
		for n > 0 {
			k := min(n, len(chunk))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		n, err1 := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		rate, err2 := strconv.ParseInt(r.URL.Query().Get("rate"), 10, 64)
		if err1 != nil || err2 != nil || n < 0 || n > 4<<30 || rate < 0 {
			http.Error(w, "n must be 0..4GiB and rate >= 0", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		streamBody(w, n, rate)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on %s for an http target: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// StreamByte is byte i of a /stream body, so a receiver can check every
// byte it got.
func StreamByte(i int64) byte { return byte(i % 251) }

// streamBody writes n bytes of the stream to w, paced to rate bytes per
// second when rate > 0 (the pace shapes the load; nothing waits on it).
func streamBody(w http.ResponseWriter, n, rate int64) {
	const chunk = 16 << 10
	buf := make([]byte, chunk)
	flusher, _ := w.(http.Flusher)
	start := time.Now()
	var sent int64
	for sent < n {
		k := min(n-sent, chunk)
		for i := range k {
			buf[i] = StreamByte(sent + i)
		}
		if _, err := w.Write(buf[:k]); err != nil {
			return
		}
		sent += k
		if flusher != nil {
			flusher.Flush()
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
	}
}
