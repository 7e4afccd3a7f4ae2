//! Certificates for TLS tests, made with the openssl command line as an operator makes them
//! (test.sh installs openssl): certificate authorities and the certificates they sign, each
//! a PEM certificate and an unencrypted P-256 key.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory of certificates.
pub struct Pki {
    pub dir: PathBuf,
}

/// A certificate and its key.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pair {
    pub fn cert(&self) -> &str {
        self.cert.to_str().expect("utf-8 path")
    }

    pub fn key(&self) -> &str {
        self.key.to_str().expect("utf-8 path")
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (test.sh installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("pki dir");
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    /// A self-signed CA named `name` (`<name>.crt`, `<name>.key`).
    pub fn authority(&self, name: &str) -> Pair {
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        self.pair(name)
    }

    /// A certificate `name` with subject CN `cn` for `names` (`IP:127.0.0.1`,
    /// `DNS:localhost`, ...; none for a client certificate), usable by servers and clients,
    /// signed by the CA `authority`.
    pub fn issue(&self, authority: &str, name: &str, cn: &str, names: &[&str]) -> Pair {
        let mut extensions = String::from(
            "[leaf]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        );
        if !names.is_empty() {
            extensions.push_str(&format!("subjectAltName={}\n", names.join(",")));
        }
        let extension_file = format!("{name}.ext");
        std::fs::write(self.dir.join(&extension_file), extensions).expect("extensions");
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{authority}.crt"),
                "-CAkey",
                &format!("{authority}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                &extension_file,
                "-extensions",
                "leaf",
            ],
        );
        self.pair(name)
    }

    pub fn pair(&self, name: &str) -> Pair {
        Pair {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        }
    }

    /// The path of `<name>.crt` as a string.
    pub fn cert(&self, name: &str) -> String {
        self.dir
            .join(format!("{name}.crt"))
            .to_string_lossy()
            .into_owned()
    }
}

/// The subject of the certificate a TLS server at `address` presents (host:port), read with
/// `openssl s_client` presenting `client` and trusting `ca`.
pub fn served_subject(address: &str, ca: &str, client: &Pair) -> String {
    let fetched = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {address} -CAfile {ca} -cert {} -key {} </dev/null \
             2>/dev/null | openssl x509 -noout -subject",
            client.cert(),
            client.key()
        ))
        .output()
        .expect("run openssl s_client");
    String::from_utf8_lossy(&fetched.stdout).trim().to_string()
}
