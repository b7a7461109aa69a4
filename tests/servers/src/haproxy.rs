//! A real HAProxy (Debian's `haproxy`) running the shipped `infra/haproxy/haproxy.cfg` on a free
//! loopback port in front of two gateways, killed on drop.

use std::process::{Child, Command, Stdio};

use anyhow::Context;

use crate::{kill, repo_root, tool, wait_for_port, with_free_port};

pub struct Haproxy {
    child: Child,
    pub port: u16,
}

impl Haproxy {
    /// HAProxy with the shipped configuration in front of `gateways` (host:port each), which
    /// must accept PROXY v2 (`HERALD_PROXY_PROTOCOL`), as the configuration sends it.
    pub fn start(gateways: [&str; 2]) -> anyhow::Result<Self> {
        let bin = tool("HERALD_HAPROXY", "/usr/sbin/haproxy")?;
        let config = repo_root().join("infra/haproxy/haproxy.cfg");
        with_free_port(|port| {
            let mut child = Command::new(&bin)
                .arg("-db")
                .arg("-f")
                .arg(&config)
                .env("HERALD_HAPROXY_BIND", format!("127.0.0.1:{port}"))
                .env("HERALD_GATEWAY_1", gateways[0])
                .env("HERALD_GATEWAY_2", gateways[1])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting haproxy")?;
            wait_for_port(port, &mut child, "haproxy")?;
            Ok(Haproxy { child, port })
        })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
