//! Which connection a datagram's Destination Connection ID belongs to.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use super::ConnectionHandle;
use crate::wire::ConnectionId;

/// Connection IDs that route to a connection: the ones it issued, and for servers the client's
/// first Destination Connection ID.
///
/// The map keeps the standard library's keyed SipHash, since a peer chooses some of these IDs
/// and an unkeyed hash would let it force collisions. The last route looked up is remembered:
/// a busy connection's datagrams arrive back to back, and they then skip the hash.
#[derive(Debug, Default)]
pub(super) struct Routes {
    by_cid: HashMap<ConnectionId, ConnectionHandle>,
    /// The same routes by connection, so forgetting a connection is not a scan of all routes.
    by_connection: FxHashMap<ConnectionHandle, Vec<ConnectionId>>,
    /// The last route found; always one that `by_cid` holds.
    last: Option<(ConnectionId, ConnectionHandle)>,
}

impl Routes {
    /// Routes `cid` to `handle`.
    pub(super) fn add(&mut self, cid: ConnectionId, handle: ConnectionHandle) {
        self.forget_last(&cid);
        self.by_cid.insert(cid, handle);
        self.by_connection.entry(handle).or_default().push(cid);
    }

    /// The connection `cid` routes to.
    pub(super) fn get(&mut self, cid: &ConnectionId) -> Option<ConnectionHandle> {
        if let Some((last, handle)) = self.last {
            if last == *cid {
                return Some(handle);
            }
        }
        let handle = *self.by_cid.get(cid)?;
        self.last = Some((*cid, handle));
        Some(handle)
    }

    /// Whether `cid` routes anywhere.
    pub(super) fn contains(&self, cid: &ConnectionId) -> bool {
        self.by_cid.contains_key(cid)
    }

    /// Stops routing `cid`, which `handle` retired.
    pub(super) fn retire(&mut self, handle: ConnectionHandle, cid: &ConnectionId) {
        if self.by_cid.get(cid) == Some(&handle) {
            self.by_cid.remove(cid);
            self.forget_last(cid);
        }
        if let Some(cids) = self.by_connection.get_mut(&handle) {
            cids.retain(|c| c != cid);
        }
    }

    /// Stops routing every connection ID of `handle`.
    pub(super) fn remove_connection(&mut self, handle: ConnectionHandle) {
        for cid in self.by_connection.remove(&handle).unwrap_or_default() {
            if self.by_cid.get(&cid) == Some(&handle) {
                self.by_cid.remove(&cid);
                self.forget_last(&cid);
            }
        }
    }

    /// Forgets the remembered route if it is `cid`'s.
    fn forget_last(&mut self, cid: &ConnectionId) {
        if self.last.is_some_and(|(last, _)| last == *cid) {
            self.last = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(byte: u8) -> ConnectionId {
        ConnectionId::from_slice(&[byte; 8]).unwrap()
    }

    #[test]
    fn routes_forget_the_remembered_route_when_it_goes() {
        let mut routes = Routes::default();
        let (a, b) = (ConnectionHandle(1), ConnectionHandle(2));
        routes.add(cid(1), a);
        routes.add(cid(2), a);
        assert_eq!(routes.get(&cid(1)), Some(a));
        // Retired: the remembered route must not answer for it any more.
        routes.retire(a, &cid(1));
        assert_eq!(routes.get(&cid(1)), None);
        assert_eq!(routes.get(&cid(2)), Some(a));
        // Re-routed to another connection.
        routes.add(cid(2), b);
        assert_eq!(routes.get(&cid(2)), Some(b));
        // Another connection's ID stays when one connection goes.
        routes.remove_connection(a);
        assert_eq!(routes.get(&cid(2)), Some(b));
        routes.remove_connection(b);
        assert_eq!(routes.get(&cid(2)), None);
        assert!(!routes.contains(&cid(2)));
    }
}
