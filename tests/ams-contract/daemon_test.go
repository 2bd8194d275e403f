package amscontract

import (
	"bufio"
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
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readyTimeout bounds how long `aar serve` may take to print its ready line and accept.
const readyTimeout = 30 * time.Second

// daemon is one `aar serve` started for a test, with its own state directory.
type daemon struct {
	bin         string
	dir         string
	configPath  string
	stateDir    string
	addr        string
	fingerprint string
	cmd         *exec.Cmd
	stderrPath  string
	exited      chan struct{}
}

// aarBinary finds the daemon under test. A developer without a built binary gets a skip;
// CI must never pass by skipping, so there a missing binary fails.
func aarBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("AAR_BIN")
	if bin == "" {
		bin = filepath.Join("..", "..", "target", "release", "aar")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatalf("expected a usable path in AAR_BIN, got %q: %v", bin, err)
	}
	if _, err := os.Stat(abs); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no aar binary at %s (%v): build it with `cargo build --release -p aar` or set AAR_BIN; under CI this is a failure", abs, err)
		}
		t.Fatalf("expected the aar binary at %s (AAR_BIN), got: %v", abs, err)
	}
	return abs
}

// clientIdentity is a publisher certificate like the one an AMS unit presents: ECDSA
// P-256, self-signed, trusted by fingerprint rather than by any CA.
type clientIdentity struct {
	cert    tls.Certificate
	pemPath string
}

func newClientIdentity(t *testing.T, dir string) clientIdentity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("expected an ECDSA P-256 key, got: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatalf("expected a random serial number, got: %v", err)
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "ams-contract-publisher"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("expected a self-signed certificate, got: %v", err)
	}
	pemPath := filepath.Join(dir, "publisher.crt")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(pemPath, certPEM, 0o600); err != nil {
		t.Fatalf("expected to write %s, got: %v", pemPath, err)
	}
	return clientIdentity{
		cert:    tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pemPath: pemPath,
	}
}

// startDaemon writes a config, trusts id as publisher with the CLI (the operator's way),
// starts `aar serve` and returns once it accepts connections. The process is killed when
// the test ends.
func startDaemon(t *testing.T, bin string, id clientIdentity, dir string) *daemon {
	t.Helper()
	d := &daemon{
		bin:        bin,
		dir:        dir,
		configPath: filepath.Join(dir, "config.yaml"),
		stateDir:   filepath.Join(dir, "state"),
		stderrPath: filepath.Join(dir, "aar.stderr"),
		exited:     make(chan struct{}),
	}
	if err := os.MkdirAll(d.stateDir, 0o700); err != nil {
		t.Fatalf("expected to create %s, got: %v", d.stateDir, err)
	}
	// Port 0: the daemon binds a free port itself and prints it, so no other process can
	// take a port between our choosing it and the daemon binding it.
	config := fmt.Sprintf("http:\n  addr: 127.0.0.1:0\n  shutdown-timeout: 5s\nstate-directory: %s\n", d.stateDir)
	if err := os.WriteFile(d.configPath, []byte(config), 0o600); err != nil {
		t.Fatalf("expected to write %s, got: %v", d.configPath, err)
	}

	out, err := d.command("trust", "add", id.pemPath, "--publisher").CombinedOutput()
	if err != nil {
		t.Fatalf("expected `aar trust add %s --publisher` to succeed, got %v:\n%s", id.pemPath, err, out)
	}

	stderr, err := os.Create(d.stderrPath)
	if err != nil {
		t.Fatalf("expected to create %s, got: %v", d.stderrPath, err)
	}
	defer stderr.Close()
	d.cmd = d.command("serve")
	d.cmd.Stderr = stderr
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("expected a pipe for aar's stdout, got: %v", err)
	}
	setParentDeathSignal(d.cmd)
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("expected `%s serve` to start, got: %v", bin, err)
	}
	go func() {
		_ = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() { d.stop(t) })

	lines := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		first := true
		for scanner.Scan() {
			if first {
				lines <- scanner.Text()
				first = false
			}
		}
		if first {
			close(lines)
		}
	}()
	var line string
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("expected aar serve to print its ready line, but it closed stdout (exited: %v)\n--- stderr\n%s", d.hasExited(), d.stderr())
		}
		line = l
	case <-time.After(readyTimeout):
		t.Fatalf("expected aar serve to print its ready line within %s, got nothing\n--- stderr\n%s", readyTimeout, d.stderr())
	}
	addr, fingerprint, err := parseReadyLine(line)
	if err != nil {
		t.Fatalf("expected a ready line `aar <version> serving https://<addr> (storage fs, server fingerprint <hex>)`, got %q: %v", line, err)
	}
	d.addr, d.fingerprint = addr, fingerprint
	d.waitAccepting(t)
	return d
}

// command runs the binary against this instance only: AAR_CONFIG from the caller's
// environment must not point it at another one.
func (d *daemon) command(args ...string) *exec.Cmd {
	cmd := exec.Command(d.bin, append(args, "--config", d.configPath)...)
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AAR_CONFIG=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	return cmd
}

func parseReadyLine(line string) (addr, fingerprint string, err error) {
	_, rest, ok := strings.Cut(line, " serving https://")
	if !ok {
		return "", "", fmt.Errorf("no %q", " serving https://")
	}
	addr, rest, ok = strings.Cut(rest, " (")
	if !ok {
		return "", "", fmt.Errorf("no %q after the address", " (")
	}
	_, fingerprint, ok = strings.Cut(rest, "server fingerprint ")
	if !ok || !strings.HasSuffix(fingerprint, ")") {
		return "", "", fmt.Errorf("no %q ending the line", "server fingerprint <hex>)")
	}
	fingerprint = strings.TrimSuffix(fingerprint, ")")
	if !isFingerprint(fingerprint) {
		return "", "", fmt.Errorf("fingerprint %q is not 64 lowercase hex characters", fingerprint)
	}
	return addr, fingerprint, nil
}

func isFingerprint(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// waitAccepting dials until the listener answers: the ready line may be printed a moment
// before the accept loop runs.
func (d *daemon) waitAccepting(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		conn, err := net.DialTimeout("tcp", d.addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if d.hasExited() || time.Now().After(deadline) {
			t.Fatalf("expected aar serve to accept on %s, got: %v (exited: %v)\n--- stderr\n%s", d.addr, err, d.hasExited(), d.stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemon) hasExited() bool {
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

func (d *daemon) stderr() string {
	b, err := os.ReadFile(d.stderrPath)
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)", err)
	}
	return string(b)
}

// stop kills the daemon and waits for it, so that no process outlives the test; its
// stderr is shown when the test failed, as that is where the daemon says why.
func (d *daemon) stop(t *testing.T) {
	if !d.hasExited() {
		_ = d.cmd.Process.Kill()
	}
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("expected aar serve (pid %d) to exit after SIGKILL within 10s, it did not", d.cmd.Process.Pid)
	}
	if t.Failed() {
		t.Logf("--- aar serve stderr\n%s", d.stderr())
	}
}

// serverCertificateFingerprint reads <state-directory>/certs/server.crt: the operator's
// source of AMS's registry.fingerprint, independent of any TLS connection.
func (d *daemon) serverCertificateFingerprint(t *testing.T) string {
	t.Helper()
	path := filepath.Join(d.stateDir, "certs", "server.crt")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("expected the server certificate at %s, got: %v", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("expected a PEM CERTIFICATE block in %s, got:\n%s", path, data)
	}
	sum := sha256.Sum256(block.Bytes)
	return hex.EncodeToString(sum[:])
}

// amsTLSConfig is how AMS connects to a registry: TLS 1.3 with its client certificate,
// and the server trusted by pinning the SHA-256 of its DER certificate (AMS's
// registry.fingerprint) instead of any CA chain or host name.
func amsTLSConfig(id clientIdentity, fingerprint string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{id.cert},
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if len(rawCerts) == 0 {
				return fmt.Errorf("expected a server certificate with fingerprint %s, got none", fingerprint)
			}
			sum := sha256.Sum256(rawCerts[0])
			if got := hex.EncodeToString(sum[:]); got != fingerprint {
				return fmt.Errorf("expected server fingerprint %s, got %s", fingerprint, got)
			}
			return nil
		},
	}
}

func amsHTTPClient(id clientIdentity, fingerprint string) *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			TLSClientConfig:     amsTLSConfig(id, fingerprint),
			TLSHandshakeTimeout: 10 * time.Second,
		},
		// AMS follows redirects (S3 or CloudFront downloads); the fs backend under test
		// never answers one, so any redirect here is unexpected and shown as is.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// image is a few MiB of bytes that never repeat (SHA-256 in counter mode), so a server
// that dropped, reordered or duplicated a block could not return the same digest.
func image(seed string, size int) []byte {
	out := bytes.NewBuffer(make([]byte, 0, size+sha256.Size))
	var counter [8]byte
	for i := uint64(0); out.Len() < size; i++ {
		for k := range counter {
			counter[k] = byte(i >> (8 * k))
		}
		sum := sha256.Sum256(append([]byte(seed), counter[:]...))
		out.Write(sum[:])
	}
	return out.Bytes()[:size]
}
