//! `weft_admin_refused_total`: admin requests refused because they change the proxy and did
//! not come from loopback (`/shutdown`, `PUT /logging`). A count that moves means someone
//! off this host tried to stop the proxy or turn its logging up.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Labels {
    path: &'static str,
}

/// The counter family.
#[derive(Clone, Debug, Default)]
pub(crate) struct AdminRefusals(Family<Labels, Counter>);

impl AdminRefusals {
    pub(crate) fn register(registry: &mut Registry) -> AdminRefusals {
        let family = AdminRefusals::default();
        registry.register(
            "admin_refused",
            "Admin requests refused because they change the proxy and came from another host, by path",
            family.0.clone(),
        );
        family
    }

    pub(crate) fn inc(&self, path: &'static str) {
        self.0.get_or_create(&Labels { path }).inc();
    }
}
