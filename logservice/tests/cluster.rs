//! The log service over real gRPC and real files, in one process: three
//! replicas on 127.0.0.1, a writer, readers, and bad input.

use std::time::Duration;

use strata_logservice::client::{
    LogClient, LogClientConfig, LogReader, ReplicaStatus, replica_status,
};
use strata_logservice::server::{ServerConfig, serve_on};
use strata_proto::logservice as pb;
use strata_proto::logservice::log_service_client::LogServiceClient;
use strata_wal::{Batch, BatchBuilder, Lsn, Record};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const CLUSTER: &str = "test-cluster";

struct Cluster {
    endpoints: Vec<String>,
    dir: tempfile::TempDir,
    stops: Vec<CancellationToken>,
    tasks: Vec<tokio::task::JoinHandle<strata_logservice::Result<()>>>,
    listeners_addrs: Vec<std::net::SocketAddr>,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let endpoints: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
        let mut c = Cluster {
            endpoints,
            dir,
            stops: Vec::new(),
            tasks: Vec::new(),
            listeners_addrs: addrs,
        };
        for (i, l) in listeners.into_iter().enumerate() {
            c.spawn(i, l);
        }
        c
    }

    /// Replica `i`'s segment files, oldest first.
    fn segment_files(&self, i: usize) -> Vec<std::path::PathBuf> {
        let dir = self.dir.path().join(format!("r{i}")).join("wal");
        let mut segs: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        segs.sort();
        segs
    }

    /// A writer client connected to every replica (it wins an election).
    async fn writer(&self, id: &str) -> LogClient {
        LogClient::connect(LogClientConfig::new(CLUSTER, id, self.endpoints.clone()))
            .await
            .unwrap()
    }

    fn config(&self, i: usize) -> ServerConfig {
        let mut cfg =
            ServerConfig::new(i as u32 + 1, CLUSTER, self.dir.path().join(format!("r{i}")));
        cfg.peers = self
            .endpoints
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, e)| e.clone())
            .collect();
        cfg.segment_size_bytes = 1 << 20;
        cfg.housekeeping_interval = Duration::from_millis(50);
        cfg
    }

    fn spawn(&mut self, i: usize, listener: TcpListener) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve_on(listener, self.config(i), stop.clone()));
        if i < self.stops.len() {
            self.stops[i] = stop;
            self.tasks[i] = task;
        } else {
            self.stops.push(stop);
            self.tasks.push(task);
        }
    }

    async fn stop(&mut self, i: usize) {
        self.stops[i].cancel();
        (&mut self.tasks[i]).await.unwrap().unwrap();
    }

    async fn restart(&mut self, i: usize) {
        let l = TcpListener::bind(self.listeners_addrs[i]).await.unwrap();
        self.spawn(i, l);
    }
}

fn batch(i: u64, size: usize) -> Batch {
    let mut b = BatchBuilder::new();
    let mut payload = vec![(i % 251) as u8; size];
    payload[..8].copy_from_slice(&i.to_le_bytes());
    b.push(&Record::RowChange { payload }).unwrap();
    b.commit(i)
}

async fn read_all(endpoint: &str, upto: Lsn) -> Vec<u8> {
    let mut r = LogReader::new(
        CLUSTER,
        "test-reader",
        vec![endpoint.to_string()],
        Lsn::ZERO,
    );
    let mut out = Vec::new();
    while r.position() < upto {
        let chunk = tokio::time::timeout(Duration::from_secs(10), r.next_chunk())
            .await
            .unwrap()
            .unwrap();
        out.extend_from_slice(&chunk.data);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_commit_and_read_back_identical_from_every_replica() {
    let cluster = Cluster::start(3).await;
    let client = cluster.writer("w1").await;
    let mut last = Lsn::ZERO;
    for i in 0..200 {
        let lsn = client
            .append(batch(i, 100 + (i as usize % 7) * 300))
            .await
            .unwrap();
        assert!(lsn > last, "commit LSNs rise");
        last = lsn;
    }
    // Concurrent appends share the stream and all commit.
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                c.append(batch(1000 + t * 100 + i, 200)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let commit = client.state().commit_lsn;
    let logs: Vec<Vec<u8>> =
        futures::future::join_all(cluster.endpoints.iter().map(|e| read_all(e, commit))).await;
    assert_eq!(logs[0], logs[1]);
    assert_eq!(logs[0], logs[2]);
    let batches = strata_wal::record::decode_batches(&logs[0], Lsn::ZERO).unwrap();
    // A TermStart batch, then ours.
    assert_eq!(batches.len(), 1 + 200 + 320);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_16_mib_batch_commits_whole() {
    let cluster = Cluster::start(3).await;
    let client = cluster.writer("w1").await;
    let mut b = BatchBuilder::new();
    for i in 0..17u64 {
        b.push(&Record::RowChange {
            payload: vec![i as u8; 1_000_000],
        })
        .unwrap();
    }
    let lsn = client.append(b.commit(1)).await.unwrap();
    let log = read_all(&cluster.endpoints[1], lsn).await;
    let batches = strata_wal::record::decode_batches(&log, Lsn::ZERO).unwrap();
    assert_eq!(batches.last().unwrap().records.len(), 18);
    assert_eq!(batches.last().unwrap().commit_lsn, lsn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_fences_the_first() {
    let cluster = Cluster::start(3).await;
    let w1 = cluster.writer("w1").await;
    let before = w1.append(batch(1, 100)).await.unwrap();
    let w2 = cluster.writer("w2").await;
    assert!(w2.state().term > w1.state().term);
    let err = w1.append(batch(2, 100)).await.unwrap_err();
    assert!(
        matches!(err, strata_logservice::LogError::Fenced { .. }),
        "{err}"
    );
    // The fenced writer refuses every later write too.
    assert!(matches!(
        w1.append(batch(3, 100)).await,
        Err(strata_logservice::LogError::Fenced { .. })
    ));
    let after = w2.append(batch(4, 100)).await.unwrap();
    assert!(after > before);
    // What w1 committed survived the change of writer.
    let log = read_all(&cluster.endpoints[0], after).await;
    let batches = strata_wal::record::decode_batches(&log, Lsn::ZERO).unwrap();
    assert!(batches.iter().any(|b| b.commit_lsn == before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarted_behind_catches_up_from_peers() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.writer("w1").await;
    client.append(batch(0, 100)).await.unwrap();
    cluster.stop(2).await;
    let mut last = Lsn::ZERO;
    for i in 1..300 {
        last = client.append(batch(i, 2000)).await.unwrap();
    }
    cluster.restart(2).await;
    last = last.max(client.append(batch(999, 100)).await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = replica_status(&cluster.endpoints[2], CLUSTER).await;
        if let Ok(ref s) = s
            && s.flush_lsn >= last
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica 3 did not catch up: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        read_all(&cluster.endpoints[2], last).await,
        read_all(&cluster.endpoints[0], last).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_writer_tells_every_replica_its_last_commit() {
    let cluster = Cluster::start(3).await;
    let mut cfg = LogClientConfig::new(CLUSTER, "w1", cluster.endpoints.clone());
    cfg.close_patience = Duration::from_secs(30);
    let client = LogClient::connect(cfg).await.unwrap();
    let mut last = Lsn::ZERO;
    for i in 0..50 {
        last = client.append(batch(i, 500)).await.unwrap();
    }
    // Closing right after the last commit: its acknowledgement came from
    // a quorum, and no replica had been told it was committed yet.
    client.close();
    tokio::time::timeout(Duration::from_secs(60), client.closed())
        .await
        .expect("the writer finishes closing");
    for endpoint in &cluster.endpoints {
        let s = replica_status(endpoint, CLUSTER).await.unwrap();
        assert_eq!(s.commit_lsn, last, "{endpoint}");
    }
    assert!(
        client.append(batch(50, 10)).await.is_err(),
        "a closed writer takes no more batches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_on_a_replica_that_missed_the_last_commits_moves_to_a_peer() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.writer("w1").await;
    client.append(batch(0, 100)).await.unwrap();
    cluster.stop(0).await;
    let mut last = Lsn::ZERO;
    for i in 1..20 {
        last = client.append(batch(i, 300)).await.unwrap();
    }
    // The writer goes away before replica 1 is back: nobody tells it.
    client.close();
    client.closed().await;
    cluster.restart(0).await;
    let mut reader = LogReader::new(CLUSTER, "r", cluster.endpoints.clone(), Lsn::ZERO);
    while reader.position() < last {
        tokio::time::timeout(Duration::from_secs(30), reader.next_chunk())
            .await
            .expect("the reader finds a replica that has the commits")
            .unwrap();
    }
    assert_eq!(reader.position(), last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_typed_statuses() {
    let cluster = Cluster::start(3).await;
    let client = cluster.writer("w1").await;
    client.append(batch(0, 100)).await.unwrap();
    let mut raw = LogServiceClient::connect(cluster.endpoints[0].clone())
        .await
        .unwrap();

    let wrong = raw
        .status(pb::StatusRequest {
            cluster_id: "other".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::FailedPrecondition);
    assert!(
        wrong.message().contains("wrong cluster"),
        "{}",
        wrong.message()
    );

    let no_term = pb::ElectRequest {
        cluster_id: CLUSTER.into(),
        term: 0,
        writer_id: "x".into(),
        ..Default::default()
    };
    assert_eq!(
        raw.elect(no_term).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );

    // A stale term is refused, not granted.
    let stale = pb::ElectRequest {
        cluster_id: CLUSTER.into(),
        term: 1,
        writer_id: "old".into(),
        ..Default::default()
    };
    let p = raw.elect(stale).await.unwrap().into_inner();
    assert!(!p.granted);
    assert!(p.promised_term >= 1);

    let bad_fetch = pb::FetchRequest {
        cluster_id: CLUSTER.into(),
        term: 0,
        start_lsn: 10,
        end_lsn: 5,
        max_bytes: 10,
    };
    assert_eq!(
        raw.fetch(bad_fetch).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );

    // An append with a stale term is fenced; one with garbage bytes at the
    // right place is a typed error; neither changes the log.
    let s = replica_status(&cluster.endpoints[0], CLUSTER)
        .await
        .unwrap();
    let stale_append = pb::AppendRequest {
        cluster_id: CLUSTER.into(),
        term: 1,
        prev_term: 1,
        start_lsn: s.end_lsn.0,
        data_term: 1,
        data: vec![1, 2, 3].into(),
        ..Default::default()
    };
    let resp = append_once(&mut raw, stale_append).await.unwrap();
    assert_eq!(resp.outcome, pb::append_response::Outcome::Fenced as i32);
    let garbage = pb::AppendRequest {
        cluster_id: CLUSTER.into(),
        term: s.promised_term,
        prev_term: s.promised_term,
        start_lsn: s.end_lsn.0,
        data_term: s.promised_term,
        data: vec![0xff; 64].into(),
        ..Default::default()
    };
    let err = append_once(&mut raw, garbage).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err}");
    assert_eq!(
        replica_status(&cluster.endpoints[0], CLUSTER)
            .await
            .unwrap()
            .end_lsn,
        s.end_lsn
    );
    // The real writer still commits.
    client.append(batch(1, 100)).await.unwrap();
}

/// The same bad input on the framed append transport the writer uses:
/// each a typed answer, the connection closed after an error, the log
/// unchanged, and the real writer unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_framed_appends_get_typed_answers_and_harm_nobody() {
    use bytes::BufMut;
    use strata_logservice::LogError;
    use strata_logservice::framed;

    let cluster = Cluster::start(3).await;
    let client = cluster.writer("w1").await;
    let committed = client.append(batch(0, 100)).await.unwrap();
    // A quorum is two of three: replica 0 may not have the batch yet.
    // The bad appends below are placed at its end, so wait until that end
    // is the committed one (a later arrival would turn them into
    // mismatches that keep the stream open).
    let s = wait_for_end(&cluster.endpoints[0], committed).await;
    let append = |cluster_id: &str, term: u64, data: Vec<u8>| pb::AppendRequest {
        cluster_id: cluster_id.into(),
        term,
        prev_term: term,
        start_lsn: s.end_lsn.0,
        data_term: term,
        data: data.into(),
        ..Default::default()
    };
    let addr = cluster.listeners_addrs[0];

    // A stale term is fenced, and the stream stays open for more.
    let mut frames = bytes::BytesMut::new();
    framed::put_request(&mut frames, &append(CLUSTER, 1, vec![1, 2, 3]));
    framed::put_request(&mut frames, &append(CLUSTER, 1, vec![4]));
    let answers = framed_exchange(addr, frames, 2).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    for a in &answers {
        let resp = a.as_ref().expect("an acknowledgement");
        assert_eq!(resp.outcome, pb::append_response::Outcome::Fenced as i32);
        assert_eq!(resp.replica_id, 1);
    }

    // Garbage log bytes at the right place, a wrong cluster, an
    // undecodable frame, a frame longer than the limit: each one error,
    // then the replica hangs up.
    let mut garbage = bytes::BytesMut::new();
    framed::put_request(
        &mut garbage,
        &append(CLUSTER, s.promised_term, vec![0xff; 64]),
    );
    let mut wrong_cluster = bytes::BytesMut::new();
    framed::put_request(
        &mut wrong_cluster,
        &append("other", s.promised_term, vec![]),
    );
    let mut undecodable = bytes::BytesMut::new();
    undecodable.put_u32_le(3);
    undecodable.put_slice(&[0xff, 0xff, 0xff]);
    let mut oversized = bytes::BytesMut::new();
    oversized.put_u32_le(framed::MAX_FRAME_BYTES as u32 + 1);
    type Expected = fn(&LogError) -> bool;
    let cases: [(&str, bytes::BytesMut, Expected); 4] = [
        ("garbage", garbage, |e| {
            matches!(e, LogError::CorruptFile { .. })
        }),
        ("wrong cluster", wrong_cluster, |e| {
            matches!(e, LogError::WrongCluster { .. })
        }),
        ("undecodable", undecodable, |e| {
            matches!(e, LogError::BadRequest(_))
        }),
        ("oversized", oversized, |e| {
            matches!(e, LogError::BadRequest(_))
        }),
    ];
    for (what, frames, expected) in cases {
        let answers = framed_exchange(addr, frames, 10).await;
        assert_eq!(answers.len(), 1, "{what}: {answers:?}");
        match &answers[0] {
            Err(e) => assert!(expected(e), "{what}: {e:?}"),
            Ok(resp) => panic!("{what}: acknowledged: {resp:?}"),
        }
    }
    assert_eq!(
        replica_status(&cluster.endpoints[0], CLUSTER)
            .await
            .unwrap()
            .end_lsn,
        s.end_lsn
    );
    client.append(batch(1, 100)).await.unwrap();
}

/// Polls `endpoint`'s status until its log ends at or past `lsn`.
async fn wait_for_end(endpoint: &str, lsn: Lsn) -> ReplicaStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = replica_status(endpoint, CLUSTER).await.unwrap();
        if s.end_lsn >= lsn {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{endpoint} never reached {lsn}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Opens a framed append connection to `addr`, sends `frames`, and reads
/// answers until the replica hangs up or `max` have come.
async fn framed_exchange(
    addr: std::net::SocketAddr,
    frames: bytes::BytesMut,
    max: usize,
) -> Vec<Result<pb::AppendResponse, strata_logservice::LogError>> {
    use strata_logservice::framed;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(framed::MAGIC).await.unwrap();
    conn.write_all(&frames).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let mut answers = Vec::new();
    while answers.len() < max {
        if let Some(frame) = framed::take_frame(&mut buf).unwrap() {
            answers.push(framed::decode_response(frame));
            continue;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read_buf(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!("the replica neither answered nor hung up after {answers:?}")
            })
            .unwrap_or(0);
        if n == 0 {
            break;
        }
    }
    answers
}

async fn append_once(
    raw: &mut LogServiceClient<tonic::transport::Channel>,
    req: pb::AppendRequest,
) -> Result<pb::AppendResponse, tonic::Status> {
    let mut stream = raw
        .append(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    stream.message().await.map(|m| m.expect("one response"))
}

/// A raw read stream of replica `endpoint`'s committed log from LSN 0.
async fn read_stream(endpoint: &str, consumer: &str) -> tonic::Streaming<pb::ReadResponse> {
    let mut raw = LogServiceClient::connect(endpoint.to_string())
        .await
        .unwrap();
    let req = pb::ReadRequest {
        cluster_id: CLUSTER.into(),
        consumer_id: consumer.into(),
        start_lsn: 0,
    };
    raw.read(req).await.unwrap().into_inner()
}

async fn wait_for(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ok().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_are_trimmed_only_below_every_consumers_safe_lsn() {
    let cluster = Cluster::start(3).await;
    let client = cluster.writer("w1").await;
    // A consumer registers at 0 by reading.
    let mut reader = LogReader::new(
        CLUSTER,
        "pageserver",
        vec![cluster.endpoints[0].clone()],
        Lsn::ZERO,
    );
    reader.next_chunk().await.unwrap();
    let mut last = Lsn::ZERO;
    for i in 0..60 {
        last = client.append(batch(i, 100_000)).await.unwrap();
    }
    let status = replica_status(&cluster.endpoints[0], CLUSTER)
        .await
        .unwrap();
    assert!(status.segment_count >= 5, "{status:?}");
    // Housekeeping runs every 50 ms: the consumer at 0 holds every segment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        replica_status(&cluster.endpoints[0], CLUSTER)
            .await
            .unwrap()
            .start_lsn,
        Lsn::ZERO
    );

    // Once it reports a safe LSN, segments wholly below it go, no further.
    let safe = Lsn(last.0 / 2);
    reader.report_safe_lsn(safe).await.unwrap();
    let endpoint = cluster.endpoints[0].clone();
    wait_for("trimming", async || {
        replica_status(&endpoint, CLUSTER).await.unwrap().start_lsn > Lsn::ZERO
    })
    .await;
    let trimmed = replica_status(&cluster.endpoints[0], CLUSTER)
        .await
        .unwrap();
    assert!(
        trimmed.start_lsn <= safe,
        "trimmed past the safe LSN: {trimmed:?}"
    );
    assert!(trimmed.segment_count < status.segment_count);
    // Below the start is a clear error; from the safe LSN on, all is there.
    let mut stream = read_stream(&cluster.endpoints[0], "late").await;
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
    let mut from_start = LogReader::new(
        CLUSTER,
        "late2",
        vec![cluster.endpoints[0].clone()],
        trimmed.start_lsn,
    );
    while from_start.position() < last {
        from_start.next_chunk().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_segment_is_a_typed_error_and_readers_fail_over() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.writer("w1").await;
    let mut last = Lsn::ZERO;
    for i in 0..40 {
        last = client.append(batch(i, 100_000)).await.unwrap();
    }
    let good = read_all(&cluster.endpoints[1], last).await;
    // Flip one byte in the middle of replica 1's first segment.
    cluster.stop(0).await;
    let segs = cluster.segment_files(0);
    assert!(segs.len() >= 3);
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&segs[0], &bytes).unwrap();
    cluster.restart(0).await;

    // Reading through the bad record from that replica is DATA_LOSS naming
    // the record's LSN, never the wrong bytes.
    let mut stream = read_stream(&cluster.endpoints[0], "c").await;
    let mut got = Vec::new();
    let err = loop {
        match stream.message().await {
            Ok(Some(m)) => got.extend_from_slice(&m.data),
            Ok(None) => panic!("stream ended without reporting the corruption"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err}");
    assert!(err.message().contains("LSN"), "{}", err.message());
    assert_eq!(
        got[..],
        good[..got.len()],
        "what came before the bad record is right"
    );
    // A reader that lists every replica fails over and gets it all.
    let mut reader = LogReader::new(CLUSTER, "c2", cluster.endpoints.clone(), Lsn::ZERO);
    let mut all = Vec::new();
    while reader.position() < last {
        all.extend_from_slice(&reader.next_chunk().await.unwrap().data);
    }
    assert_eq!(all, good);
    // And the writer still commits with the other two.
    client.append(batch(99, 100)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_below_the_durable_commit_is_refused_at_open_not_cut() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.writer("w1").await;
    for i in 0..5 {
        client.append(batch(i, 1000)).await.unwrap();
    }
    // Let housekeeping (every 50 ms) save the commit LSN.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.stop(0).await;
    let segs = cluster.segment_files(0);
    let last = segs.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    bytes[512 + 100] ^= 0x01; // inside the first record after the header
    std::fs::write(last, &bytes).unwrap();

    let listener = TcpListener::bind(cluster.listeners_addrs[0]).await.unwrap();
    let err = serve_on(listener, cluster.config(0), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, strata_logservice::LogError::CorruptFile { .. }),
        "expected a corrupt-file error, got {err}"
    );
    assert!(err.to_string().contains("not a torn write"), "{err}");
    // The other two keep committing.
    client.append(batch(9, 100)).await.unwrap();
}
