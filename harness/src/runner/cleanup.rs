//! Removal of containers that deploybench created and that outlived their run.

use std::collections::HashMap;

use bollard::container::{ListContainersOptions, RemoveContainerOptions};
use bollard::Docker;

use super::progress::Progress;
use crate::engine::docker::{owner_is_alive, MANAGED_LABEL, OWNER_LABEL, RUN_LABEL};

/// Lists the ids of containers carrying every label filter given; with
/// `orphans_only`, only those whose owning harness process is gone.
async fn labelled_containers(
    docker: &Docker,
    filters: Vec<String>,
    orphans_only: bool,
) -> Result<Vec<String>, bollard::errors::Error> {
    let options = ListContainersOptions::<String> {
        all: true,
        filters: HashMap::from([("label".to_string(), filters)]),
        ..Default::default()
    };
    let containers = docker.list_containers(Some(options)).await?;
    Ok(containers
        .into_iter()
        .filter(|container| {
            let owner = container.labels.as_ref().and_then(|labels| labels.get(OWNER_LABEL));
            !orphans_only || !owner.is_some_and(|owner| owner_is_alive(owner))
        })
        .filter_map(|container| container.id)
        .collect())
}

/// Force-removes containers; returns how many were removed. Failures are logged.
async fn remove_all(docker: &Docker, ids: &[String]) -> usize {
    let mut removed = 0;
    for id in ids {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match docker.remove_container(id, Some(options)).await {
            Ok(()) => removed += 1,
            Err(error) => tracing::warn!(container = %id, %error, "cannot remove container"),
        }
    }
    removed
}

/// Removes containers left by earlier runs whose process is gone, and returns how many.
/// Containers of a run that is still going are kept.
pub async fn remove_leftovers(docker: &Docker, progress: &Progress) -> usize {
    match labelled_containers(docker, vec![format!("{MANAGED_LABEL}=true")], true).await {
        Ok(ids) if ids.is_empty() => 0,
        Ok(ids) => {
            let removed = remove_all(docker, &ids).await;
            progress
                .step("cleanup", 0)
                .finish(&format!("removed {removed} container(s) left by an earlier run"));
            removed
        }
        Err(error) => {
            tracing::warn!(%error, "cannot list leftover containers");
            0
        }
    }
}

/// Removes every container of one run.
pub async fn remove_run_containers(docker: &Docker, run_id: &str) -> usize {
    match labelled_containers(docker, vec![format!("{RUN_LABEL}={run_id}")], false).await {
        Ok(ids) => remove_all(docker, &ids).await,
        Err(error) => {
            tracing::warn!(%error, run = run_id, "cannot list the run's containers");
            0
        }
    }
}
