//! Test support: an S3-compatible server to run the bucket's S3 path
//! against, for this crate's tests and the workspace's process tests.

use crate::remote::{BucketConfig, S3Settings};

/// moto's S3 server (`python3 -m moto.server`, which
/// tests/install-clients.sh installs with pip) on a free port of
/// 127.0.0.1, stopped when dropped. It speaks the S3 protocol over HTTP,
/// so a bucket opened on it goes through `object_store`'s S3 client as a
/// page server configured with `s3://` does. Its buckets live in its
/// memory.
pub struct S3Server {
    child: std::process::Child,
    port: u16,
}

/// Credentials moto accepts (it does not check them).
pub const ACCESS_KEY_ID: &str = "strata";
pub const SECRET_ACCESS_KEY: &str = "strata-secret";
pub const REGION: &str = "us-east-1";

impl S3Server {
    /// Starts the server and waits until it listens (panics, saying how
    /// to install it, if it cannot start).
    pub fn start() -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        let child = std::process::Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting python3 -m moto.server");
        let mut server = S3Server { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "moto's S3 server exited ({status}); \
                     tests/install-clients.sh installs it (pip: moto[server])"
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "moto's S3 server did not listen in 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The settings that reach this server.
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint()),
            region: Some(REGION.into()),
            access_key_id: Some(ACCESS_KEY_ID.into()),
            secret_access_key: Some(SECRET_ACCESS_KEY.into()),
            allow_http: Some(true),
        }
    }

    /// Creates bucket `name` (S3's `CreateBucket`: a PUT of the bucket's
    /// path) and returns the config of it.
    pub fn create_bucket(&self, name: &str) -> BucketConfig {
        use std::io::{Read, Write};
        let mut http = std::net::TcpStream::connect(("127.0.0.1", self.port))
            .expect("connecting to moto's S3 server");
        write!(
            http,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("asking moto for a bucket");
        let mut answer = String::new();
        http.read_to_string(&mut answer)
            .expect("reading moto's answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        BucketConfig::S3 {
            bucket: name.into(),
            settings: self.settings(),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
