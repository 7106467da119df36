//! Streams under 0-RTT (RFC 9000 §7.4.1, RFC 9001 §4.6.2): the limits the client used from the
//! remembered parameters give way to this handshake's, and which streams began in early data.

use std::time::Instant;

use super::{Streams, dir_index};
use crate::TransportErrorCode;
use crate::error::TransportError;
use crate::flow::SendWindow;
use crate::wire::{Dir, StreamId, TransportParameters};

impl Streams {
    /// 0-RTT was accepted: this handshake's limits, never lower than the remembered ones,
    /// replace them, and every sending stream gets its new initial limit (RFC 9000 §7.4.1).
    pub(crate) fn raise_peer_limits(&mut self, now: Instant, params: &TransportParameters) {
        self.on_max_data(params.initial_max_data.into_inner());
        for (dir, limit) in [
            (Dir::Bi, params.initial_max_streams_bidi),
            (Dir::Uni, params.initial_max_streams_uni),
        ] {
            if self.credit[dir_index(dir)].local.raise(limit.into_inner()) {
                self.grant_waiting_opens(now, dir);
            }
        }
        self.set_peer_windows(params);
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            let window = self.peer_window_for_local(id.dir());
            let raised = self
                .streams
                .get_mut(&id)
                .and_then(|s| s.send.as_mut())
                .is_some_and(|send| send.flow.raise(window));
            if raised {
                self.schedule(id);
            }
        }
    }

    /// 0-RTT was rejected: the server saw none of it, so every stream starts over from its
    /// first byte under this handshake's limits (RFC 9001 §4.6.2). Fails when the server now
    /// allows fewer streams than were opened.
    pub(crate) fn restart_after_rejected_early_data(
        &mut self,
        params: &TransportParameters,
    ) -> Result<(), TransportError> {
        for (dir, limit) in [
            (Dir::Bi, params.initial_max_streams_bidi.into_inner()),
            (Dir::Uni, params.initial_max_streams_uni.into_inner()),
        ] {
            let local = &mut self.credit[dir_index(dir)].local;
            let opened = local.used();
            if opened > limit {
                return Err(TransportError::new(
                    TransportErrorCode::INTERNAL_ERROR,
                    format!(
                        "0-RTT was rejected and the server now allows {limit} {dir:?} streams; \
                         {opened} were opened in early data"
                    ),
                ));
            }
            *local = SendWindow::new(limit);
            local.consume(opened);
        }
        self.conn_send = SendWindow::new(params.initial_max_data.into_inner());
        self.set_peer_windows(params);
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            let window = self.peer_window_for_local(id.dir());
            let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut()) else {
                continue;
            };
            send.restart(window);
            if send.reset_due().is_some() {
                self.queue_control(id);
            }
            self.schedule(id);
        }
        Ok(())
    }

    /// Server: stream data of `id` arrived in a 0-RTT packet.
    pub(crate) fn mark_early(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.early = true;
        }
    }

    /// Whether data of stream `id` arrived in 0-RTT packets (it may be a replay: act only on
    /// requests that are safe to repeat); `None` for a stream not known.
    pub fn is_early(&self, id: StreamId) -> Option<bool> {
        self.streams.get(&id).map(|s| s.early)
    }

    /// The send limit a stream we open starts with.
    pub(super) fn peer_window_for_local(&self, dir: Dir) -> u64 {
        match dir {
            Dir::Bi => self.peer_windows.bidi_remote,
            Dir::Uni => self.peer_windows.uni,
        }
    }
}
