package natsauth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// Files of the private CA and the server certificate under the TLS dir.
const (
	caCertFile     = "ca.pem"
	caKeyFile      = "ca-key.pem"
	serverCertFile = "server.pem" // the leaf, then the CA
	serverKeyFile  = "server-key.pem"
)

// Lifetimes. A server certificate is renewed at start when it has less
// than certRenewBefore left.
const (
	caLifetime      = 10 * 365 * 24 * time.Hour
	certLifetime    = 2 * 365 * 24 * time.Hour
	certRenewBefore = 30 * 24 * time.Hour
)

// TLS is the bus's private CA and the server certificate it signed.
type TLS struct {
	dir   string
	ca    *x509.Certificate
	caPEM []byte
}

// LoadOrCreateTLS loads the CA and server certificate kept in dir, creating
// the CA once and the certificate whenever its names differ from hosts
// (plus localhost, 127.0.0.1, ::1 and this machine's hostname), it was not
// signed by the CA, or it is close to expiry. hosts are names or IPs
// clients dial; unspecified addresses (0.0.0.0, ::) are skipped.
func LoadOrCreateTLS(dir string, hosts []string) (*TLS, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "resolving %s", dir)
	}
	if err := privateDir(abs); err != nil {
		return nil, err
	}
	t := &TLS{dir: abs}
	caKey, err := t.loadOrCreateCA()
	if err != nil {
		return nil, err
	}
	dnsNames, ips := sanList(hosts)
	current, err := t.serverCertCurrent(dnsNames, ips)
	if err != nil || current {
		return t, err
	}
	if err := t.issueServerCert(caKey, dnsNames, ips); err != nil {
		return nil, err
	}
	return t, nil
}

// CertFile is the server certificate, followed by the CA so that clients
// pinning the CA by fingerprint find it in the chain.
func (t *TLS) CertFile() string { return filepath.Join(t.dir, serverCertFile) }

// KeyFile is the server certificate's private key.
func (t *TLS) KeyFile() string { return filepath.Join(t.dir, serverKeyFile) }

// CAFile is the CA certificate (PEM), for clients that trust it by file
// (nats.RootCAs, --nats-ca).
func (t *TLS) CAFile() string { return filepath.Join(t.dir, caCertFile) }

// CAPEM is the CA certificate.
func (t *TLS) CAPEM() []byte { return bytes.Clone(t.caPEM) }

// CAFingerprint is the hex SHA-256 of the CA certificate (DER), which a
// join token carries so that a new node trusts this CA and nothing else.
func (t *TLS) CAFingerprint() string { return Fingerprint(t.ca.Raw) }

// ClientConfig is a client TLS config that trusts this CA only.
func (t *TLS) ClientConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(t.ca)
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
}

// Fingerprint is the hex SHA-256 of a certificate's DER bytes.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ClientConfigFromCA is a client TLS config that trusts the CA certificates
// in caPEM and no other (no public CAs).
func ClientConfigFromCA(caPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errs.New(errs.Invalid, "no CA certificate in the PEM given")
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

// ClientConfigFromCAFile is ClientConfigFromCA of a PEM file.
func ClientConfigFromCAFile(path string) (*tls.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "reading the CA file")
	}
	cfg, err := ClientConfigFromCA(data)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return cfg, nil
}

// PinnedClientConfig is a client TLS config that trusts exactly the CA
// whose SHA-256 fingerprint is given: the server must present that CA in
// its chain, and its certificate must chain to it and name the host
// dialled. System roots play no part.
func PinnedClientConfig(fingerprint string) (*tls.Config, error) {
	want, err := parseFingerprint(fingerprint)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The default verification against system roots is replaced by
		// VerifyConnection, which chains to the pinned CA only.
		InsecureSkipVerify: true, // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinned(cs, want)
		},
	}, nil
}

// verifyPinned checks that the peer's chain holds the CA with fingerprint
// want and that the leaf is valid under that CA alone.
func verifyPinned(cs tls.ConnectionState, want string) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return errors.New("server presented no certificate")
	}
	var ca *x509.Certificate
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		if Fingerprint(c.Raw) == want {
			ca = c
		} else {
			inter.AddCert(c)
		}
	}
	if ca == nil || !ca.IsCA {
		return fmt.Errorf("server did not present the CA %s in its certificate chain", want)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, DNSName: cs.ServerName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("verifying the server certificate against CA %s: %w", want, err)
	}
	return nil
}

func parseFingerprint(s string) (string, error) {
	s = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", errs.Field("ca_fingerprint", "must be the hex SHA-256 of the CA certificate (64 hex digits)")
	}
	return s, nil
}

// loadOrCreateCA loads the CA, or creates it (ECDSA P-256) when it does
// not exist, and returns its key.
func (t *TLS) loadOrCreateCA() (*ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(t.dir, caCertFile), filepath.Join(t.dir, caKeyFile)
	keyPEM, err := readSecret(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return t.createCA(certPath, keyPath)
	}
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "reading the CA key %s", keyPath)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "reading the CA certificate")
	}
	ca, err := parseCert(certPEM)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "reading the CA certificate %s", certPath)
	}
	if !ca.IsCA || !key.PublicKey.Equal(ca.PublicKey) {
		return nil, errs.New(errs.Invalid, "%s is not the CA certificate of the key in %s", certPath, keyPath)
	}
	t.ca, t.caPEM = ca, certPEM
	return key, nil
}

func (t *TLS) createCA(certPath, keyPath string) (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "vpnfleet NATS CA", Organization: []string{"vpnfleet"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("signing the CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the new CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(certPath, certPEM, 0o600); err != nil {
		return nil, err
	}
	t.ca, t.caPEM = ca, certPEM
	return key, nil
}

// serverCertCurrent reports whether the server certificate on disk names
// exactly dnsNames and ips, was signed by the CA, matches its key and is
// not about to expire. A key file that others may read is an error, not a
// reason to issue a new one: the operator must learn of it.
func (t *TLS) serverCertCurrent(dnsNames []string, ips []net.IP) (bool, error) {
	if _, err := readSecret(t.KeyFile()); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	pair, err := tls.LoadX509KeyPair(t.CertFile(), t.KeyFile())
	if err != nil || len(pair.Certificate) == 0 {
		return false, nil
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || leaf.CheckSignatureFrom(t.ca) != nil {
		return false, nil
	}
	if time.Until(leaf.NotAfter) < certRenewBefore {
		return false, nil
	}
	if !slices.Equal(sortedStrings(leaf.DNSNames), dnsNames) {
		return false, nil
	}
	return slices.EqualFunc(sortedIPs(leaf.IPAddresses), ips, net.IP.Equal), nil
}

func (t *TLS) issueServerCert(caKey *ecdsa.PrivateKey, dnsNames []string, ips []net.IP) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating the server key: %w", err)
	}
	now := time.Now()
	cn := "localhost"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"vpnfleet"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Client auth too: the nodes of a cluster present it to each
		// other on their TLS routes, which verify both ends.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, t.ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("signing the server certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), t.caPEM...)
	// The key first: a certificate never sits next to a key of another.
	if err := writeFile(t.KeyFile(), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(t.CertFile(), chain, 0o600)
}

// sanList is the names a server certificate carries for hosts: the hosts,
// localhost, the loopback addresses and the hostname, sorted and unique.
func sanList(hosts []string) ([]string, []net.IP) {
	all := append([]string{"localhost", "127.0.0.1", "::1"}, hosts...)
	if h, err := os.Hostname(); err == nil {
		all = append(all, h)
	}
	var names []string
	var ips []net.IP
	for _, h := range all {
		h = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(h), "["), "]")
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() {
				ips = append(ips, ip)
			}
			continue
		}
		names = append(names, strings.ToLower(h))
	}
	return slices.Compact(sortedStrings(names)), slices.CompactFunc(sortedIPs(ips), net.IP.Equal)
}

func sortedStrings(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func sortedIPs(ips []net.IP) []net.IP {
	out := make([]net.IP, len(ips))
	for i, ip := range ips {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		out[i] = ip
	}
	slices.SortFunc(out, func(a, b net.IP) int { return bytes.Compare(a, b) })
	return out
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("reading random bytes: %v", err)) // crypto/rand does not fail
	}
	return n
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding a private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKey(data []byte) (*ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%T is not an ECDSA key", k)
	}
	return key, nil
}

func parseCert(data []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no certificate PEM block")
	}
	return x509.ParseCertificate(b.Bytes)
}
