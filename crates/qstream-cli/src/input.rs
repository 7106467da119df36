//! Inputs read on a thread of their own, in large blocks a few ahead of the stream, so the
//! async runtime, which also drives the connections, never waits for a disk or a pipe.

use std::io::{self, Read};
use std::thread::JoinHandle;

/// The most one read takes: one system call per block.
const BLOCK: usize = 1 << 20;
/// Blocks read ahead of the stream.
const AHEAD: usize = 4;

/// An input being read ahead, optionally hashed (BLAKE3) on the reading thread.
pub(crate) struct ReadAhead {
    blocks: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    reader: Option<JoinHandle<Option<blake3::Hash>>>,
}

impl ReadAhead {
    /// Starts reading `input`; with `hash`, the thread also hashes what it read.
    pub(crate) fn start(mut input: impl Read + Send + 'static, hash: bool) -> io::Result<Self> {
        let (sender, blocks) = tokio::sync::mpsc::channel(AHEAD);
        let reader = std::thread::Builder::new()
            .name("qstream-read".into())
            .spawn(move || {
                let mut hasher = hash.then(blake3::Hasher::new);
                loop {
                    let mut block = vec![0u8; BLOCK];
                    let read = match input.read(&mut block) {
                        Ok(0) => return hasher.map(|h| h.finalize()),
                        Ok(n) => {
                            block.truncate(n);
                            if let Some(hasher) = &mut hasher {
                                hasher.update(&block);
                            }
                            Ok(block)
                        }
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                        Err(error) => Err(error),
                    };
                    let failed = read.is_err();
                    if sender.blocking_send(read).is_err() || failed {
                        return None;
                    }
                }
            })?;
        Ok(Self {
            blocks,
            reader: Some(reader),
        })
    }

    /// The next block; `None` at the end of the input.
    pub(crate) async fn next(&mut self) -> Option<io::Result<Vec<u8>>> {
        self.blocks.recv().await
    }

    /// The hash of everything read, once [`next`](Self::next) returned `None`; `None` when
    /// not hashing or the input failed.
    pub(crate) fn hash(mut self) -> Option<blake3::Hash> {
        self.reader.take()?.join().ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocks_arrive_in_order_and_the_hash_covers_them_all() {
        let data: Vec<u8> = (0..3 * BLOCK + 17).map(|i| (i % 251) as u8).collect();
        let mut input = ReadAhead::start(io::Cursor::new(data.clone()), true).unwrap();
        let mut read = Vec::new();
        while let Some(block) = input.next().await {
            read.extend_from_slice(&block.unwrap());
        }
        assert_eq!(read, data);
        assert_eq!(input.hash(), Some(blake3::hash(&data)));
    }
}
