use super::*;

fn key(peer_port: u16, host: Option<&str>) -> ConnectionKey<'_> {
    ConnectionKey {
        outgoing: false,
        tls: false,
        local: SocketAddr::from(([127, 0, 0, 1], 8080)),
        peer: SocketAddr::from(([127, 0, 0, 1], peer_port)),
        host,
        protocol_version: "1.1",
    }
}

#[test]
fn a_block_is_answered_for_an_equal_key_only() {
    let mut blocks = AttributeBlocks::default();
    let base = key(40000, Some("shop.example"));
    blocks.insert(&base, b"written once");
    assert_eq!(blocks.get(&base), Some(&b"written once"[..]));
    // Each field of the key on its own makes another connection.
    let others = [
        ConnectionKey {
            outgoing: true,
            ..base
        },
        ConnectionKey { tls: true, ..base },
        ConnectionKey {
            local: SocketAddr::from(([127, 0, 0, 1], 8081)),
            ..base
        },
        key(40001, Some("shop.example")),
        key(40000, Some("shop.example:80")),
        key(40000, None),
        ConnectionKey {
            protocol_version: "1.0",
            ..base
        },
    ];
    let block = blocks
        .slots
        .get(blocks.slot_of(&base))
        .and_then(Option::as_ref)
        .unwrap_or_else(|| panic!("nothing in the slot of {base:?}"));
    assert!(block.holds(&base));
    for other in others {
        // Compared field by field, whatever slot the key hashes to.
        assert!(!block.holds(&other), "{other:?}");
        assert_eq!(blocks.get(&other), None, "{other:?}");
    }
}

#[test]
fn a_colliding_key_takes_the_slot_over_and_is_never_answered_with_the_old_bytes() {
    let mut blocks = AttributeBlocks::default();
    let first = key(1, Some("a"));
    // A key with the same slot under this memory's own seed.
    let collider = (2..u16::MAX)
        .map(|port| key(port, Some("b")))
        .find(|k| blocks.slot_of(k) == blocks.slot_of(&first))
        .unwrap_or_else(|| panic!("no collision in 65,000 ports"));
    blocks.insert(&first, b"first");
    assert_eq!(blocks.get(&collider), None);
    blocks.insert(&collider, b"second, longer");
    assert_eq!(blocks.get(&collider), Some(&b"second, longer"[..]));
    assert_eq!(blocks.get(&first), None);
    // Back again, from a host to none: the slot's key follows.
    let hostless = key(1, None);
    blocks.insert(&first, b"first again");
    assert_eq!(blocks.get(&first), Some(&b"first again"[..]));
    assert_eq!(blocks.get(&hostless), None);
}

#[test]
fn keys_that_differ_only_in_their_hosts_bytes_share_a_slot_and_are_told_apart() {
    let mut blocks = AttributeBlocks::default();
    let (shop, shoe) = (key(1, Some("shop")), key(1, Some("shoe")));
    assert_eq!(blocks.slot_of(&shop), blocks.slot_of(&shoe));
    blocks.insert(&shop, b"shop's");
    assert_eq!(blocks.get(&shoe), None);
    blocks.insert(&shoe, b"shoe's");
    assert_eq!(blocks.get(&shoe), Some(&b"shoe's"[..]));
    assert_eq!(blocks.get(&shop), None);
}
