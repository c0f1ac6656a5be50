//! A raw Pulsar client over magnetar-pulsar's own frame codec: CONNECT on connect, commands with
//! or without a payload, and the next frame that is not a PING (bounded).

use std::time::Duration;

use bytes::BytesMut;
use magnetar_pulsar::frame::{self, Frame, FRAME_SIZE_MAX_BYTES};
use magnetar_pulsar::proto::base_command::Type;
use magnetar_pulsar::proto::{BaseCommand, CommandConnect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the next frame may take (only reached when a test fails).
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

pub struct PulsarClient {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl PulsarClient {
    /// Connects and completes CONNECT/CONNECTED (protocol version 21).
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        let mut c = PulsarClient {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
        };
        c.send(BaseCommand {
            r#type: Type::Connect as i32,
            connect: Some(CommandConnect {
                client_version: "test".into(),
                protocol_version: Some(21),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
        assert_eq!(c.next().await.command.r#type, Type::Connected as i32);
        c
    }

    pub async fn send(&mut self, command: BaseCommand) {
        self.stream
            .write_all(&frame::encode(&command))
            .await
            .expect("send");
    }

    pub async fn send_payload(&mut self, command: BaseCommand, body: &[u8]) {
        self.stream
            .write_all(&frame::encode_with_payload(&command, None, body))
            .await
            .expect("send");
    }

    /// The next frame that is not a PING.
    pub async fn next(&mut self) -> Frame {
        tokio::time::timeout(FRAME_WAIT, async {
            loop {
                if let Some(f) = frame::decode(&mut self.buf, FRAME_SIZE_MAX_BYTES).expect("frame")
                {
                    if f.command.r#type == Type::Ping as i32 {
                        continue;
                    }
                    return f;
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                assert!(n > 0, "connection closed");
            }
        })
        .await
        .expect("a frame within 10 s")
    }
}
