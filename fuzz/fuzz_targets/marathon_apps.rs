//! The Marathon namer's `/v2/apps?embed=apps.tasks` parser, on any body, with and without
//! health checks. Health checks only ever remove endpoints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_discovery::fuzz_support::marathon_apps;
use weft_naming::Resolution;

fn endpoints(rs: &[Resolution]) -> usize {
    rs.iter()
        .map(|r| match r {
            Resolution::Bound(b) => b.addrs.len(),
            _ => 0,
        })
        .sum()
}

fuzz_target!(|data: &[u8]| {
    let all = marathon_apps(data, false);
    let healthy = marathon_apps(data, true);
    assert_eq!(all.is_ok(), healthy.is_ok());
    if let (Ok(all), Ok(healthy)) = (all, healthy) {
        assert!(endpoints(&healthy) <= endpoints(&all));
    }
});
