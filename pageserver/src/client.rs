//! The page server's client: `GetPage@LSN` as compute nodes (and tests and
//! benchmarks) call it.
//!
//! Every page that arrives is checked (size, checksum, layout) and its
//! validity range sanity-checked before it is handed out: a page crossing a
//! process boundary is never trusted.

use std::sync::Arc;

use strata_proto::pageserver as pb;
use strata_proto::pageserver::page_server_client::PageServerClient as GrpcClient;
use strata_wal::page::Page;
use strata_wal::{Lsn, PageId};
use tonic::transport::Channel;

use crate::error::{PageServerError, Result};
use crate::framed::Pool;

/// A page as of an LSN and its validity `[from, to)`, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotePage {
    pub page: Page,
    pub from: Lsn,
    pub to: Lsn,
}

/// The page server's figures.
pub type Status = pb::StatusResponse;

/// GetPage goes over the framed transport ([`crate::framed`]), on a pool
/// of connections its clones share; everything else over one HTTP/2
/// channel. Clones are cheap and run requests concurrently.
#[derive(Clone)]
pub struct PageServerClient {
    grpc: GrpcClient<Channel>,
    framed: Arc<Pool>,
    cluster_id: String,
}

impl PageServerClient {
    /// Connects to `endpoint` (`http://host:port`).
    pub async fn connect(endpoint: &str, cluster_id: impl Into<String>) -> Result<Self> {
        let bad =
            |what: String| PageServerError::BadRequest(format!("endpoint {endpoint:?}: {what}"));
        let endpoint_uri = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| bad(e.to_string()))?;
        let addr = endpoint_uri
            .uri()
            .authority()
            .ok_or_else(|| bad("no host and port".into()))?
            .to_string();
        let channel = endpoint_uri.tcp_nodelay(true).connect().await?;
        Ok(PageServerClient {
            grpc: GrpcClient::new(channel),
            framed: Arc::new(Pool::new(addr)),
            cluster_id: cluster_id.into(),
        })
    }

    /// `page` as of `lsn`.
    pub async fn get_page(&mut self, page: PageId, lsn: Lsn) -> Result<RemotePage> {
        let req = pb::GetPageRequest {
            cluster_id: self.cluster_id.clone(),
            page: Some(pb::PageRef {
                space: page.space,
                page_no: page.page_no,
            }),
            lsn: lsn.0,
        };
        let resp = self.framed.get_page(&req).await?;
        let image = resp
            .page
            .ok_or_else(|| PageServerError::BadResponse("an answer without a page".into()))?;
        checked(page, lsn, image)
    }

    /// Many pages as of one `lsn`, each with its own result, in order.
    pub async fn get_pages(
        &mut self,
        pages: &[PageId],
        lsn: Lsn,
    ) -> Result<Vec<Result<RemotePage>>> {
        let req = pb::GetPagesRequest {
            cluster_id: self.cluster_id.clone(),
            pages: pages
                .iter()
                .map(|p| pb::PageRef {
                    space: p.space,
                    page_no: p.page_no,
                })
                .collect(),
            lsn: lsn.0,
        };
        let resp = self.grpc.get_pages(req).await?.into_inner();
        if resp.results.len() != pages.len() {
            return Err(PageServerError::BadResponse(format!(
                "{} results for {} pages",
                resp.results.len(),
                pages.len()
            )));
        }
        Ok(pages
            .iter()
            .zip(resp.results)
            .map(|(page, r)| match r.result {
                Some(pb::page_result::Result::Image(image)) => checked(*page, lsn, image),
                Some(pb::page_result::Result::Error(e)) => Err(PageServerError::Remote {
                    code: tonic::Code::from_i32(e.code),
                    message: e.message,
                }),
                None => Err(PageServerError::BadResponse(
                    "a result with neither page nor error".into(),
                )),
            })
            .collect())
    }

    /// Reports `compute_id`'s oldest snapshot in use.
    pub async fn report_snapshot(&mut self, compute_id: &str, oldest: Lsn) -> Result<()> {
        let req = pb::ReportSnapshotRequest {
            cluster_id: self.cluster_id.clone(),
            compute_id: compute_id.to_string(),
            oldest_snapshot_lsn: oldest.0,
        };
        self.grpc.report_snapshot(req).await?;
        Ok(())
    }

    pub async fn status(&mut self) -> Result<Status> {
        let req = pb::StatusRequest {
            cluster_id: self.cluster_id.clone(),
        };
        Ok(self.grpc.status(req).await?.into_inner())
    }
}

/// Verifies a received page and its validity for a request at `lsn`.
fn checked(id: PageId, lsn: Lsn, image: pb::PageImage) -> Result<RemotePage> {
    let bad = |what: String| PageServerError::BadResponse(format!("page {id} at {lsn}: {what}"));
    let page = Page::from_bytes(&image.image).map_err(|e| bad(e.to_string()))?;
    page.verify(id).map_err(|e| bad(e.to_string()))?;
    let (from, to) = (Lsn(image.valid_from), Lsn(image.valid_to));
    if !(from <= lsn && lsn < to) || page.lsn() != from {
        return Err(bad(format!(
            "validity [{from}, {to}) with page LSN {} does not cover the request",
            page.lsn()
        )));
    }
    Ok(RemotePage { page, from, to })
}
