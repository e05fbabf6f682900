// The JVM's decision to connect, as the CRM's client makes it: JSSE's PKIX trust manager over
// the given CA file, TLS 1.2, and server identity checked the way JavaMail checks it
// (endpoint identification "LDAPS": RFC 2818/6125 DNS SANs, the CN only without a DNS SAN, an
// IP host only against IP SANs). Used by tests/client_model.rs as an oracle.
//
// Usage: java -cp DIR JsseClient CA_PEM < cases
// Each input line is "NAME PORT" (connect to 127.0.0.1:PORT, check the certificate for NAME);
// each output line is "ACCEPT <protocol>" or "REFUSE <reason>", in the same order.

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public class JsseClient {
    public static void main(String[] args) throws Exception {
        KeyStore anchors = KeyStore.getInstance(KeyStore.getDefaultType());
        anchors.load(null, null);
        CertificateFactory cf = CertificateFactory.getInstance("X.509");
        try (InputStream in = new FileInputStream(args[0])) {
            int i = 0;
            for (Certificate c : cf.generateCertificates(in)) {
                anchors.setCertificateEntry("ca" + (i++), c);
            }
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        tmf.init(anchors);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        BufferedReader cases = new BufferedReader(new InputStreamReader(System.in));
        for (String line; (line = cases.readLine()) != null; ) {
            String[] f = line.trim().split("\\s+");
            if (f.length < 2) {
                continue;
            }
            String name = f[0];
            int port = Integer.parseInt(f[1]);
            try (Socket plain = new Socket()) {
                plain.connect(new InetSocketAddress("127.0.0.1", port), 10000);
                plain.setSoTimeout(10000);
                SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(plain, name, port, false);
                SSLParameters p = s.getSSLParameters();
                p.setEndpointIdentificationAlgorithm("LDAPS");
                p.setProtocols(new String[] {"TLSv1.2"});
                s.setSSLParameters(p);
                s.startHandshake();
                System.out.println("ACCEPT " + s.getSession().getProtocol());
                s.close();
            } catch (Exception e) {
                Throwable root = e;
                while (root.getCause() != null) {
                    root = root.getCause();
                }
                System.out.println("REFUSE " + String.valueOf(root.getMessage()).replace('\n', ' '));
            }
            System.out.flush();
        }
    }
}
