//! `weft demo --discovery dns`: the demo's own authoritative DNS server for the zone
//! `weft.demo.` (hickory-server, in the demo process), so the sidecars find each other through
//! the `dnssrv` namer as they would through Consul's or Kubernetes' DNS. Each service is an
//! SRV record set `_http._tcp.<service>.weft.demo.` naming its replicas (`rates-1.weft.demo.`,
//! with an A record each); the demo adds a replica's SRV record while the mesh runs to show
//! discovery picking it up live.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hickory_server::proto::rr::rdata::{A, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

use super::layout::{Instance, Layout, APP_PORT, DNS_ZONE as ZONE};

/// Records live one second, so the `dnssrv` namer re-resolves every second (its `minTtl`).
const TTL: u32 = 1;

/// The demo's running DNS server.
pub(crate) struct DemoDns {
    zone: Arc<InMemoryZoneHandler>,
    serial: u32,
    /// Kept so the server runs until the demo ends (dropping it stops the server).
    _server: Server<Catalog>,
}

impl DemoDns {
    /// Serves the zone on `addr` (UDP and TCP) with every instance's A record and the SRV
    /// records of every instance except `held_back` (added later with [`DemoDns::add`]).
    pub(crate) async fn start(
        addr: SocketAddr,
        layout: &Layout,
        held_back: Option<&str>,
    ) -> anyhow::Result<DemoDns> {
        let origin = Name::from_ascii(ZONE).context("zone name")?;
        let mut zone =
            InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let serial = 1;
        let soa = SOA::new(
            Name::from_ascii(format!("ns.{ZONE}"))?,
            Name::from_ascii(format!("demo.{ZONE}"))?,
            serial,
            60,
            60,
            600,
            TTL,
        );
        zone.upsert_mut(
            Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)),
            serial,
        );
        for inst in &layout.instances {
            zone.upsert_mut(a_record(inst)?, serial);
            if held_back != Some(inst.name.as_str()) {
                zone.upsert_mut(srv_record(inst)?, serial);
            }
        }
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![zone.clone()]);
        let mut server = Server::new(catalog);
        let udp = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("demo DNS server: cannot listen on udp {addr}"))?;
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("demo DNS server: cannot listen on tcp {addr}"))?;
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64 * 1024);
        Ok(DemoDns {
            zone,
            serial,
            _server: server,
        })
    }

    /// Publishes `inst`'s SRV record: from its next re-resolution on, every sidecar sends it
    /// traffic.
    pub(crate) async fn add(&mut self, inst: &Instance) -> anyhow::Result<()> {
        self.serial += 1;
        self.zone.upsert(srv_record(inst)?, self.serial).await;
        Ok(())
    }
}

fn host_name(inst: &Instance) -> anyhow::Result<Name> {
    Ok(Name::from_ascii(format!("{}.{ZONE}", inst.name))?)
}

fn a_record(inst: &Instance) -> anyhow::Result<Record> {
    Ok(Record::from_rdata(
        host_name(inst)?,
        TTL,
        RData::A(A(inst.ip)),
    ))
}

fn srv_record(inst: &Instance) -> anyhow::Result<Record> {
    let name = Name::from_ascii(format!("{}.", inst.service.srv_name()))?;
    let srv = SRV::new(0, 10, APP_PORT, host_name(inst)?);
    Ok(Record::from_rdata(name, TTL, RData::SRV(srv)))
}
