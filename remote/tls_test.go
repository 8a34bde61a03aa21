package remote

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// testCA is a certificate authority made for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
	name string
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, dir: dir, name: name}
	writePEM(t, ca.file("ca.pem"), "CERTIFICATE", der)
	return ca
}

func (ca *testCA) file(name string) string { return filepath.Join(ca.dir, ca.name+"-"+name) }

// issue makes a certificate for the given loopback addresses, good for
// both ends of a connection, and returns its and its key's files.
func (ca *testCA) issue(t *testing.T, name string, ips ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = ca.file(name+".pem"), ca.file(name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Mutual TLS: a node that requires client certificates delivers to a
// subscriber with one its CA signed, and refuses, with a typed error, a
// subscriber without a certificate, one signed by another CA, and one
// without TLS; a subscriber that does not trust the node's certificate
// fails on its side. Node and subscribers are separate processes on
// loopback addresses; each subscriber reports the error it got as errors.Is
// classifies it.
func TestRemoteMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := newTestCA(t, dir, "ca"), newTestCA(t, dir, "other")
	nodeCert, nodeKey := ca.issue(t, "node", "127.0.0.2")
	subCert, subKey := ca.issue(t, "subscriber", "127.0.0.3")
	strangerCert, strangerKey := other.issue(t, "stranger", "127.0.0.3")
	node, addr := startNode(t, helperConfig{
		Listen: "127.0.0.2:0", Transport: "memory", Exports: []string{"5:1"},
		Generate: "5:1", Interval: 5 * time.Millisecond,
		Cert: nodeCert, Key: nodeKey, CA: ca.file("ca.pem"),
	})
	sub := func(cfg helperConfig) *helper {
		cfg.Listen, cfg.Node, cfg.ID = "127.0.0.3:0", addr, "5:1"
		return startHelper(t, "subscriber", cfg)
	}
	ok := sub(helperConfig{Cert: subCert, Key: subKey, CA: ca.file("ca.pem")})
	ok.wait(regexp.MustCompile(`^subscribed`), 10*time.Second)
	ok.wait(regexp.MustCompile(`^msg seq=\d+`), 5*time.Second)
	node.wait(regexp.MustCompile(`^event subscriber-added 5:1`), 5*time.Second)
	ok.stop()

	for _, c := range []struct {
		name string
		cfg  helperConfig
		want string
	}{
		{"no client certificate", helperConfig{Cert: subCert, Key: subKey, CA: ca.file("ca.pem"), NoClientCert: true}, "unauthenticated"},
		{"certificate of another CA", helperConfig{Cert: strangerCert, Key: strangerKey, CA: ca.file("ca.pem")}, "unauthenticated"},
		{"plaintext", helperConfig{}, "unauthenticated"},
		{"node not trusted", helperConfig{Cert: strangerCert, Key: strangerKey, CA: other.file("ca.pem")}, "tls"},
	} {
		h := sub(c.cfg)
		m := h.wait(regexp.MustCompile(`^errclass (\S+)`), 10*time.Second)
		if m[1] != c.want {
			t.Errorf("%s: error class %s, want %s; output %q", c.name, m[1], c.want, h.tail())
		}
		<-h.done
		h.kill()
	}
	if n := node.count(regexp.MustCompile(`^event subscriber-added`)); n != 1 {
		t.Fatalf("%d subscriptions accepted, want 1", n)
	}
	node.stop()
}
