//! Dropping, once, every capability the run does not need (the list and the
//! reasons: `privileges::capabilities_to_keep`). Started as root with
//! `sudo zerotrace run`, the loader holds every capability; before it loads
//! any BPF object or starts the worker it keeps only its list in the
//! effective and permitted sets, clears the inheritable and ambient sets, and
//! cuts the bounding set to the same list, so not even an exec as uid 0
//! could get the rest back. The loader is single-threaded here: the sets
//! are per thread.

use std::collections::HashSet;

use caps::{CapSet, Capability, CapsHashSet};

use crate::privileges::KeptCapability;

/// What the drop left: the kept set, and whether the bounding set was cut
/// (it needs CAP_SETPCAP; a service manager bounds it otherwise).
#[derive(Debug)]
pub struct Dropped {
    pub kept: CapsHashSet,
    pub bounding_cut: bool,
}

/// Reduces this thread's sets to `kept`.
pub fn drop_all_but(kept: &[KeptCapability]) -> Result<Dropped, String> {
    let kept: CapsHashSet = kept.iter().map(|k| k.capability).collect();
    let fail =
        |what: &str, e: caps::errors::CapsError| format!("dropping capabilities: {what}: {e}");
    // Ambient first: it must stay a subset of permitted and inheritable.
    caps::clear(None, CapSet::Ambient).map_err(|e| fail("ambient", e))?;
    let bounding_cut = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)
        .map_err(|e| fail("reading", e))?;
    if bounding_cut {
        let bounding = caps::read(None, CapSet::Bounding).map_err(|e| fail("bounding", e))?;
        let mut to_drop: Vec<Capability> = bounding.difference(&kept).copied().collect();
        // CAP_SETPCAP allows cutting the bounding set: it goes last.
        to_drop.sort_by_key(|c| *c == Capability::CAP_SETPCAP);
        for capability in to_drop {
            caps::drop(None, CapSet::Bounding, capability)
                .map_err(|e| fail(&format!("bounding {capability}"), e))?;
        }
    }
    caps::clear(None, CapSet::Inheritable).map_err(|e| fail("inheritable", e))?;
    // Effective before permitted: effective must stay a subset of permitted.
    let effective = caps::read(None, CapSet::Effective).map_err(|e| fail("reading", e))?;
    let kept_effective: HashSet<Capability> = effective.intersection(&kept).copied().collect();
    caps::set(None, CapSet::Effective, &kept_effective).map_err(|e| fail("effective", e))?;
    let permitted = caps::read(None, CapSet::Permitted).map_err(|e| fail("reading", e))?;
    let kept_permitted: HashSet<Capability> = permitted.intersection(&kept).copied().collect();
    caps::set(None, CapSet::Permitted, &kept_permitted).map_err(|e| fail("permitted", e))?;
    Ok(Dropped {
        kept: kept_effective,
        bounding_cut,
    })
}
