//! One process, always active: no election, no sharding.

use super::controller::run_controller;
use super::housekeeping::databases_or_none;
use super::{Error, Process};
use crate::config::RunArgs;
use crate::leader;
use crate::scope::Scope;

pub(crate) async fn run(p: &Process, args: &RunArgs) -> Result<(), Error> {
    // One process, always active: it is the leader of itself.
    leader::set_status(true, &args.leader_election_id);
    let databases = databases_or_none(p.client.clone(), args);
    let scope = Scope::new(args.watch_namespace.clone());
    run_controller(p, args, p.shutdown.wait(), scope, databases).await;
    Ok(())
}
