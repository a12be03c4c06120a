//! Property tests of the read models against the log they are built from.
//!
//! A scenario is a random sequence of operations over 3-6 instances of 2-3 projects:
//! creates (valid and invalid: unknown flavors, oversized or missing volumes, inactive
//! or unknown versions, foreign or mismatched configuration groups, replicas, quota
//! overruns, repeats), renames, the saga's reports that move an instance to ACTIVE
//! (volume, server, compute, addresses, guest, completion) or fail it, configuration
//! attach/detach and new revisions, upgrades and their completion or failure, deletes
//! and teardown. Each command is decided by the production `decide` against the fold of
//! its own stream (refusals are skipped, as the shell would answer them with an error),
//! its events are appended to an in-memory log with increasing positions and applied to
//! live `InstanceModels` as they happen; old events are re-delivered now and then.
//!
//! Properties, checked after every operation unless said otherwise:
//! - (a) the live models' `snapshot()` equals `InstanceModels::from_events(log)` (at random
//!   checkpoints and at the end), and a re-delivered event changes nothing;
//! - (b) every instance's record equals the fold of its own stream (and records the
//!   position of its last event and whether a deletion was requested);
//! - (c) list pages, quota usage, the replicas index and the mgmt pages (all projects
//!   and each, live, deleted or both) agree with what the per-stream folds imply.

use std::collections::{BTreeMap, BTreeSet};

use aggregates::catalog::{
    Backup, Catalog, ConfigurationGroup, Datastore, DatastoreVersion, Flavor, QuotaUsage,
};
use aggregates::instance::{
    self, Access, Address, Caller, ComputeStatus, CreateInstance, DatastoreRequest, DecideCtx,
    FaultInfo, Instance, InstanceCommand, InstanceEvent, ServiceStatus, Task, VolumeRequest,
};
use chrono::{DateTime, Duration, Utc};
use projections::{ApplyOutcome, InstanceModels, MgmtFilter, Position, ProjectedEvent, QuotaInUse};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};
use uuid::Uuid;

/// The outcome of a check: a failed property, with its message, shrinks like a panic
/// but prints once.
type Check = Result<(), TestCaseError>;

// ---- the world -------------------------------------------------------------------------

/// Instance ids; their order differs from their slot order, so id paging is exercised.
const IDS: [Uuid; 6] = [
    Uuid::from_u128(0x9b1e4c2a7d3f4e5a8b6c1d2e3f4a5b6c),
    Uuid::from_u128(0x1a2b3c4d5e6f4a7b8c9d0e1f2a3b4c5d),
    Uuid::from_u128(0xe4d3c2b1a0f94e8d9c7b6a5f4e3d2c1b),
    Uuid::from_u128(0x5c5c5c5c111142228333444455556666),
    Uuid::from_u128(0x00000000000040008000000000000001),
    Uuid::from_u128(0xffff0000ffff40008000ffff0000ffff),
];

const PROJECTS: [&str; 3] = ["proj-a", "proj-b", "proj-c"];

const DS_MYSQL: Uuid = Uuid::from_u128(0xd1);
const V_80: Uuid = Uuid::from_u128(0xd180);
const V_84: Uuid = Uuid::from_u128(0xd184);
const V_56: Uuid = Uuid::from_u128(0xd156);

/// Version keys a create may ask for: two active, one inactive, one unknown.
const CREATE_VERSIONS: [&str; 4] = ["8.0", "8.4", "5.6", "9.9"];
/// Version keys an upgrade may ask for: by name, by id, and one unknown.
fn upgrade_key(n: usize) -> String {
    match n {
        0 => "8.4".into(),
        1 => "8.0".into(),
        2 => V_84.to_string(),
        _ => "9.9".into(),
    }
}
/// Flavor ids a create may ask for (the last is unknown).
const FLAVORS: [&str; 3] = ["7", "8", "99"];

/// Quota limits of every project.
const INSTANCES_LIMIT: i64 = 3;
const RAM_LIMIT: i64 = 10_240;
const VOLUMES_LIMIT: i64 = 15;

fn group(
    n: u128,
    project: &str,
    version: Uuid,
    restart: bool,
    revision: u64,
) -> ConfigurationGroup {
    ConfigurationGroup {
        id: Uuid::from_u128(0xc000 + n),
        name: format!("group-{n}"),
        project_id: project.into(),
        datastore_version_id: version,
        restart_required: restart,
        revision,
        restart_required_since: if restart { revision } else { 0 },
    }
}

/// The configuration groups of the catalog: two of `proj-a` (8.0 live, 8.4 restarting),
/// one of `proj-b` and one of `proj-c` (both 8.0).
fn groups() -> Vec<ConfigurationGroup> {
    vec![
        group(1, "proj-a", V_80, false, 3),
        group(2, "proj-a", V_84, true, 1),
        group(3, "proj-b", V_80, true, 2),
        group(4, "proj-c", V_80, false, 1),
    ]
}

fn groups_where(f: impl Fn(&ConfigurationGroup) -> bool) -> Vec<ConfigurationGroup> {
    groups().into_iter().filter(|g| f(g)).collect()
}

/// What an attach or a create may name: the groups, then a malformed id and an
/// unknown one.
fn group_key(n: usize) -> String {
    let gs = groups();
    match n {
        n if n < gs.len() => gs[n].id.to_string(),
        n if n == gs.len() => "not-a-uuid".into(),
        _ => Uuid::from_u128(0xdead).to_string(),
    }
}

fn datastore() -> Datastore {
    let version = |id, name: &str, number: &str, active| DatastoreVersion {
        id,
        name: name.into(),
        version: number.into(),
        manager: "mysql".into(),
        active,
        allowed_flavors: None,
        allowed_volume_types: None,
        volume_support: true,
        replication: true,
        root_on_create: false,
    };
    Datastore {
        id: DS_MYSQL,
        name: "mysql".into(),
        default_version_id: Some(V_80),
        versions: vec![
            version(V_80, "8.0", "8.0.36", true),
            version(V_84, "8.4", "8.4.0", true),
            version(V_56, "5.6", "5.6.51", false),
        ],
    }
}

fn owner_of(project: &str) -> Caller {
    Caller {
        user_id: format!("user-of-{project}"),
        project_id: project.into(),
        roles: vec!["member".into()],
    }
}

fn admin() -> Caller {
    Caller {
        user_id: "cloud-admin".into(),
        project_id: "proj-admin".into(),
        roles: vec!["admin".into()],
    }
}

/// The identity the saga runner acts as (`docs/events.md`).
fn saga() -> Caller {
    Caller {
        user_id: "troved-saga".into(),
        project_id: "service".into(),
        roles: vec!["admin".into()],
    }
}

fn fault(what: &str) -> FaultInfo {
    FaultInfo {
        message: format!("{what} failed."),
        details: format!("{what}: simulated"),
    }
}

// ---- operations ------------------------------------------------------------------------

/// A create: valid unless it has a flaw (the first refusal it must meet is named).
#[derive(Clone, Debug)]
struct CreateSpec {
    project: usize,
    flavor: usize,
    /// GB, within the 10 GB maximum.
    volume: u64,
    /// An active version (8.0 or 8.4).
    version: usize,
    /// A group of the project and version, if it has one.
    configuration: Option<Index>,
    /// A replica (no flavor, volume, datastore or group) of one of the ready primaries,
    /// created in the primary's project.
    replica_of: Option<Index>,
    access: bool,
    flaw: Option<Flaw>,
}

/// What makes a create invalid.
#[derive(Clone, Copy, Debug)]
enum Flaw {
    UnknownFlavor,
    NoVolume,
    VolumeTooLarge,
    InactiveVersion,
    UnknownVersion,
    ForeignGroup,
    MismatchedGroup,
    MalformedGroup,
    UnknownGroup,
    ReplicaWithFlavor,
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Owner,
    OtherProject,
    Admin,
}

#[derive(Clone, Debug)]
enum UserCmd {
    Rename(u8),
    /// Attach a group of the instance's project and version (`matching`), or any key of
    /// [`group_key`] (foreign, mismatched, malformed or unknown ones included).
    Attach {
        matching: bool,
        pick: Index,
    },
    Detach,
    Upgrade(usize),
    DetachReplica,
    UpdateAccess {
        public: bool,
    },
    Delete,
    /// Promote a replica to the source of its set; every member joins (issue #15). Not
    /// generated (a new arm would shift every generated scenario): the fixed scenario
    /// [`a_promote_moves_the_replicas_index_and_the_rebuild_agrees`] runs it.
    Promote,
}

#[derive(Clone, Debug)]
enum SagaStep {
    Volume,
    Server,
    Compute(ComputeStatus),
    Addresses(u8),
    Prepared,
    Guest(ServiceStatus),
    Complete,
    GuestConfiguration,
    FailBuild,
    ReleaseResources,
    CompleteUpgrade,
    FailUpgrade,
    ApplyRevision { restart: bool },
    ServerDeleted,
    VolumeDeleted,
    CompleteDeletion,
    CompleteReplicaDetach,
    FailReplicaDetach,
    CompleteAccessUpdate,
    FailAccessUpdate,
}

/// The steps that take a created instance to ACTIVE, in the saga runner's order.
const PROVISIONING: [SagaStep; 7] = [
    SagaStep::Volume,
    SagaStep::Server,
    SagaStep::Compute(ComputeStatus::Active),
    SagaStep::Addresses(1),
    SagaStep::Prepared,
    SagaStep::Guest(ServiceStatus::Healthy),
    SagaStep::Complete,
];

/// Which instance an operation addresses: with `prefer`, one of the slots it can act on
/// (see [`Harness::resolve`]) when there is one; otherwise any slot, so refusals for
/// missing, existing and deleted instances occur too.
#[derive(Clone, Copy, Debug)]
struct Target {
    prefer: bool,
    pick: Index,
}

/// Which slots [`Harness::resolve`] prefers.
#[derive(Clone, Copy, Debug)]
enum Want {
    Free,
    Ready,
    ReadyReplica,
    Live,
}

/// Built and idle: what most user commands need.
fn ready(s: &Instance) -> bool {
    s.is_live() && s.server_id.is_some() && matches!(s.task, Task::None | Task::RestartRequired)
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        slot: Target,
        spec: CreateSpec,
    },
    User {
        slot: Target,
        who: Who,
        cmd: UserCmd,
    },
    Saga {
        slot: Target,
        step: SagaStep,
    },
    /// The saga runner finishes what the instance is doing: a build (to ACTIVE, or
    /// failed and released when `fail`), an upgrade, a teardown, a configuration apply.
    Drive {
        slot: Target,
        fail: bool,
    },
    /// Re-deliver an old event of the log to the live models.
    Redeliver(Index),
    /// Compare the live models with a rebuild from the log so far.
    Checkpoint,
}

fn create_spec(projects: usize) -> impl Strategy<Value = CreateSpec> {
    use Flaw::*;
    let flaw = prop_oneof![
        Just(UnknownFlavor),
        Just(NoVolume),
        Just(VolumeTooLarge),
        Just(InactiveVersion),
        Just(UnknownVersion),
        Just(ForeignGroup),
        Just(MismatchedGroup),
        Just(MalformedGroup),
        Just(UnknownGroup),
        Just(ReplicaWithFlavor),
    ];
    (
        (0..projects, 0..2usize, 1u64..=6, 0..2usize),
        prop::option::weighted(0.4, any::<Index>()),
        prop::option::weighted(0.3, any::<Index>()),
        any::<bool>(),
        prop::option::weighted(0.25, flaw),
    )
        .prop_map(
            |((project, flavor, volume, version), configuration, replica_of, access, flaw)| {
                CreateSpec {
                    project,
                    flavor,
                    volume,
                    version,
                    configuration,
                    replica_of,
                    access,
                    flaw,
                }
            },
        )
}

fn user_cmd() -> impl Strategy<Value = UserCmd> {
    prop_oneof![
        2 => (0u8..4).prop_map(UserCmd::Rename),
        3 => (prop::bool::weighted(0.7), any::<Index>())
            .prop_map(|(matching, pick)| UserCmd::Attach { matching, pick }),
        1 => Just(UserCmd::Detach),
        2 => (0..4usize).prop_map(UserCmd::Upgrade),
        1 => Just(UserCmd::DetachReplica),
        1 => any::<bool>().prop_map(|public| UserCmd::UpdateAccess { public }),
        2 => Just(UserCmd::Delete),
    ]
}

fn saga_step() -> impl Strategy<Value = SagaStep> {
    use SagaStep::*;
    prop_oneof![
        1 => Just(Volume),
        1 => Just(Server),
        1 => prop_oneof![
            4 => Just(ComputeStatus::Active),
            1 => Just(ComputeStatus::Build),
            1 => Just(ComputeStatus::Error),
            1 => Just(ComputeStatus::Shutoff),
        ]
        .prop_map(Compute),
        1 => (0u8..3).prop_map(Addresses),
        1 => Just(Prepared),
        1 => prop_oneof![
            4 => Just(ServiceStatus::Healthy),
            1 => Just(ServiceStatus::Running),
            1 => Just(ServiceStatus::Unknown),
            1 => Just(ServiceStatus::Shutdown),
        ]
        .prop_map(Guest),
        1 => Just(Complete),
        1 => Just(GuestConfiguration),
        1 => Just(FailBuild),
        1 => Just(ReleaseResources),
        2 => Just(CompleteUpgrade),
        1 => Just(FailUpgrade),
        1 => any::<bool>().prop_map(|restart| ApplyRevision { restart }),
        1 => Just(ServerDeleted),
        1 => Just(VolumeDeleted),
        3 => Just(CompleteDeletion),
        1 => Just(CompleteReplicaDetach),
        1 => Just(FailReplicaDetach),
        1 => Just(CompleteAccessUpdate),
        1 => Just(FailAccessUpdate),
    ]
}

fn op(projects: usize) -> impl Strategy<Value = Op> {
    let who = prop_oneof![
        8 => Just(Who::Owner),
        1 => Just(Who::OtherProject),
        1 => Just(Who::Admin),
    ];
    let slot = || {
        (prop::bool::weighted(0.85), any::<Index>())
            .prop_map(|(prefer, pick)| Target { prefer, pick })
    };
    prop_oneof![
        3 => (slot(), create_spec(projects))
            .prop_map(|(slot, spec)| Op::Create { slot, spec }),
        6 => (slot(), who, user_cmd())
            .prop_map(|(slot, who, cmd)| Op::User { slot, who, cmd }),
        5 => (slot(), saga_step()).prop_map(|(slot, step)| Op::Saga { slot, step }),
        4 => (slot(), prop::bool::weighted(0.2))
            .prop_map(|(slot, fail)| Op::Drive { slot, fail }),
        1 => any::<Index>().prop_map(Op::Redeliver),
        1 => Just(Op::Checkpoint),
    ]
}

/// A scenario: instance and project counts, the operations, and the page size the
/// list checks use.
#[derive(Clone, Debug)]
struct Scenario {
    instances: usize,
    projects: usize,
    ops: Vec<Op>,
    page_limit: usize,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (3..=6usize, 2..=3usize).prop_flat_map(|(instances, projects)| {
        (prop::collection::vec(op(projects), 1..100), 1..=4usize).prop_map(
            move |(ops, page_limit)| Scenario {
                instances,
                projects,
                ops,
                page_limit,
            },
        )
    })
}

// ---- the harness: log, streams, live models --------------------------------------------

/// The in-memory event store and the live models fed from it.
struct Harness {
    ids: Vec<Uuid>,
    projects: Vec<String>,
    /// Every stream's events with their positions, in order.
    streams: BTreeMap<Uuid, Vec<(Position, InstanceEvent)>>,
    /// `$all`, in position order.
    log: Vec<ProjectedEvent>,
    live: InstanceModels,
    last_position: u64,
    clock: DateTime<Utc>,
    /// Events appended, by type (for the generator's coverage test).
    appended: BTreeMap<&'static str, usize>,
    /// Refused commands, by name.
    refused: BTreeMap<&'static str, usize>,
}

impl Harness {
    fn new(instances: usize, projects: usize) -> Harness {
        Harness {
            ids: IDS[..instances].to_vec(),
            projects: PROJECTS[..projects].iter().map(|p| p.to_string()).collect(),
            streams: BTreeMap::new(),
            log: Vec::new(),
            live: InstanceModels::new(),
            last_position: 0,
            clock: DateTime::from_timestamp(1_714_521_600, 0).unwrap_or_default(),
            appended: BTreeMap::new(),
            refused: BTreeMap::new(),
        }
    }

    /// The fold of one stream, from scratch.
    fn fold(&self, id: Uuid) -> Instance {
        self.streams
            .get(&id)
            .map(|s| instance::fold(s.iter().map(|(_, e)| e)))
            .unwrap_or_default()
    }

    fn folds(&self) -> BTreeMap<Uuid, Instance> {
        self.streams
            .keys()
            .map(|id| (*id, self.fold(*id)))
            .collect()
    }

    /// Whether the stream ever recorded a deletion request (quota released for good).
    fn deletion_requested(&self, id: Uuid) -> bool {
        self.streams.get(&id).is_some_and(|s| {
            s.iter()
                .any(|(_, e)| matches!(e, InstanceEvent::InstanceDeletionRequested { .. }))
        })
    }

    /// Quota usage as the folds imply it: instances created, not soft-deleted and never
    /// deletion-requested, with their flavor RAM and volume size.
    fn usage_from_folds(&self, project: &str) -> QuotaInUse {
        let mut u = QuotaInUse::default();
        for (id, s) in self.folds() {
            if s.project_id == project && s.is_live() && !self.deletion_requested(id) {
                u.instances += 1;
                u.ram += s.quota_ram();
                u.volumes += s.quota_volume();
            }
        }
        u
    }

    /// Decides `cmd` for the instance in `slot` against its stream's fold and appends
    /// the events; a refusal appends nothing.
    fn execute(&mut self, slot: usize, caller: &Caller, cmd: &InstanceCommand) -> Check {
        let id = self.ids[slot];
        let state = self.fold(id);
        let ctx = DecideCtx {
            now: self.clock,
            instance_id: id,
            caller,
            catalog: &*self,
        };
        match instance::decide(&state, cmd, &ctx) {
            Ok(events) => {
                for e in events {
                    self.append(id, e)?;
                }
            }
            Err(_) => *self.refused.entry(cmd.name()).or_default() += 1,
        }
        Ok(())
    }

    /// Appends one event to the log and applies it to the live models at once.
    fn append(&mut self, id: Uuid, event: InstanceEvent) -> Check {
        self.last_position += 1;
        let position = Position {
            commit: self.last_position,
            prepare: self.last_position,
        };
        let stream = self.streams.entry(id).or_default();
        let ev = ProjectedEvent {
            position,
            instance_id: id,
            revision: stream.len() as u64,
            event: event.clone(),
        };
        *self.appended.entry(event.event_type()).or_default() += 1;
        stream.push((position, event));
        let outcome = self.live.apply(&ev);
        prop_assert_eq!(
            outcome,
            ApplyOutcome::Applied,
            "a new event at {}",
            position
        );
        self.log.push(ev);
        Ok(())
    }

    fn run(&mut self, op: &Op) -> Check {
        self.clock += Duration::minutes(1);
        match op {
            Op::Create { slot, spec } => self.create(self.resolve(*slot, Want::Free), spec),
            Op::User { slot, who, cmd } => {
                let want = match cmd {
                    UserCmd::DetachReplica => Want::ReadyReplica,
                    _ => Want::Ready,
                };
                self.user(self.resolve(*slot, want), *who, cmd)
            }
            Op::Saga { slot, step } => self.saga(self.resolve(*slot, Want::Live), step),
            Op::Drive { slot, fail } => self.drive(self.resolve(*slot, Want::Live), *fail),
            Op::Redeliver(pick) => {
                if self.log.is_empty() {
                    return Ok(());
                }
                let old = self.log[pick.index(self.log.len())].clone();
                let before = self.live.snapshot();
                prop_assert_eq!(
                    self.live.apply(&old),
                    ApplyOutcome::AlreadyApplied,
                    "re-delivered event at {}",
                    old.position
                );
                prop_assert_eq!(
                    self.live.snapshot(),
                    before,
                    "a re-delivery changed the models"
                );
                Ok(())
            }
            Op::Checkpoint => self.check_rebuild(),
        }
    }

    /// The slot a [`Target`] names now.
    /// Preferred are, in order, the first kind of slot that exists: for a create, slots
    /// not created yet; for a user command, ready instances (built, a server, no task),
    /// then live ones (ready replicas first to detach a replica); for the saga runner, live
    /// ones.
    fn resolve(&self, target: Target, want: Want) -> usize {
        let slots = |f: &dyn Fn(&Instance) -> bool| -> Vec<usize> {
            (0..self.ids.len())
                .filter(|n| f(&self.fold(self.ids[*n])))
                .collect()
        };
        let tiers = match want {
            Want::Free => vec![slots(&|s| !s.exists())],
            Want::Ready => vec![slots(&ready), slots(&Instance::is_live)],
            Want::ReadyReplica => vec![
                slots(&|s| ready(s) && s.replica_of.is_some()),
                slots(&ready),
                slots(&Instance::is_live),
            ],
            Want::Live => vec![slots(&Instance::is_live)],
        };
        match tiers.into_iter().find(|t| !t.is_empty()) {
            Some(fits) if target.prefer => fits[target.pick.index(fits.len())],
            _ => target.pick.index(self.ids.len()),
        }
    }

    fn create(&mut self, slot: usize, spec: &CreateSpec) -> Check {
        let mut project = self.projects[spec.project].clone();
        let version_id = [V_80, V_84][spec.version];
        let mut replica_of = spec.replica_of.map(|pick| {
            let primaries: Vec<Instance> = self
                .folds()
                .into_values()
                .filter(|p| ready(p) && p.replica_of.is_none() && p.id != Some(self.ids[slot]))
                .collect();
            match primaries.get(pick.index(primaries.len().max(1))) {
                Some(p) => {
                    project = p.project_id.clone();
                    p.id.unwrap_or_default()
                }
                None => self.ids[(slot + 1) % self.ids.len()],
            }
        });
        let mut flavor_ref = Some(FLAVORS[spec.flavor].to_string());
        let mut volume = Some(spec.volume);
        let mut version = CREATE_VERSIONS[spec.version].to_string();
        let mut configuration = spec.configuration.and_then(|pick| {
            let own =
                groups_where(|g| g.project_id == project && g.datastore_version_id == version_id);
            (!own.is_empty()).then(|| own[pick.index(own.len())].id.to_string())
        });
        match spec.flaw {
            None => {}
            Some(Flaw::UnknownFlavor) => flavor_ref = Some(FLAVORS[2].to_string()),
            Some(Flaw::NoVolume) => volume = None,
            Some(Flaw::VolumeTooLarge) => volume = Some(11),
            Some(Flaw::InactiveVersion) => version = CREATE_VERSIONS[2].to_string(),
            Some(Flaw::UnknownVersion) => version = CREATE_VERSIONS[3].to_string(),
            Some(Flaw::ForeignGroup) => {
                configuration = groups_where(|g| g.project_id != project)
                    .first()
                    .map(|g| g.id.to_string())
            }
            Some(Flaw::MismatchedGroup) => {
                configuration = groups_where(|g| g.datastore_version_id != version_id)
                    .first()
                    .map(|g| g.id.to_string())
            }
            Some(Flaw::MalformedGroup) => configuration = Some(group_key(groups().len())),
            Some(Flaw::UnknownGroup) => configuration = Some(group_key(groups().len() + 1)),
            Some(Flaw::ReplicaWithFlavor) => {
                replica_of = Some(self.ids[(slot + 1) % self.ids.len()]);
            }
        }
        let replica = replica_of.is_some();
        if replica && !matches!(spec.flaw, Some(Flaw::ReplicaWithFlavor)) {
            // A replica takes flavor, volume and datastore from its primary.
            flavor_ref = None;
            volume = None;
            configuration = None;
        }
        let cmd = CreateInstance {
            instance_id: self.ids[slot],
            name: format!("db-{slot}"),
            flavor_ref,
            volume: volume.map(|size| VolumeRequest {
                size,
                volume_type: None,
            }),
            datastore: (!replica).then(|| DatastoreRequest {
                datastore_type: Some("mysql".into()),
                version: Some(version),
                version_number: None,
            }),
            databases: vec![],
            users: vec![],
            nics: vec![],
            availability_zone: None,
            region_name: None,
            modules: vec![],
            restore_backup_id: None,
            replica_of,
            replica_count: replica.then_some(1),
            locality: None,
            configuration,
            access: spec
                .access
                .then(|| serde_json::json!({"is_public": false, "allowed_cidrs": []})),
            root_password: None,
        };
        let cmd = InstanceCommand::CreateInstance(Box::new(cmd));
        self.execute(slot, &owner_of(&project), &cmd)
    }

    fn user(&mut self, slot: usize, who: Who, cmd: &UserCmd) -> Check {
        let project = self.fold(self.ids[slot]).project_id;
        let caller = match who {
            Who::Owner if !project.is_empty() => owner_of(&project),
            Who::Owner => owner_of(&self.projects[0]),
            Who::OtherProject => {
                let other = PROJECTS.iter().find(|p| **p != project).unwrap_or(&"x");
                owner_of(other)
            }
            Who::Admin => admin(),
        };
        let cmd = match cmd {
            UserCmd::Rename(n) => InstanceCommand::RenameInstance {
                name: format!("db-{slot}-renamed-{n}"),
            },
            UserCmd::Attach { matching, pick } => {
                let s = self.fold(self.ids[slot]);
                let version = s.datastore.as_ref().map(|d| d.version_id);
                let own = groups_where(|g| {
                    g.project_id == s.project_id && Some(g.datastore_version_id) == version
                });
                let configuration_id = if *matching && !own.is_empty() {
                    own[pick.index(own.len())].id.to_string()
                } else {
                    group_key(pick.index(groups().len() + 2))
                };
                InstanceCommand::AttachConfiguration { configuration_id }
            }
            UserCmd::Detach => InstanceCommand::DetachConfiguration,
            UserCmd::Upgrade(n) => InstanceCommand::UpgradeDatastoreVersion {
                version: upgrade_key(*n),
            },
            UserCmd::DetachReplica => InstanceCommand::DetachReplica,
            UserCmd::UpdateAccess { public } => InstanceCommand::UpdateAccess {
                access: Access {
                    is_public: *public,
                    allowed_cidrs: if *public {
                        vec!["203.0.113.0/24".into()]
                    } else {
                        vec![]
                    },
                },
            },
            UserCmd::Delete => InstanceCommand::DeleteInstance,
            UserCmd::Promote => InstanceCommand::PromoteToReplicaSource,
        };
        self.execute(slot, &caller, &cmd)?;
        if matches!(cmd, InstanceCommand::PromoteToReplicaSource) {
            self.join_switch(slot, &caller)?;
        }
        Ok(())
    }

    /// What the command path does after a promote: every other member of the set joins
    /// the switch its coordinator recorded.
    fn join_switch(&mut self, slot: usize, caller: &Caller) -> Check {
        let id = self.ids[slot];
        let s = self.fold(id);
        let Some(switch) = s.replica_switch.filter(|w| w.coordinator() == id) else {
            return Ok(());
        };
        for member in switch.members().into_iter().filter(|m| *m != id) {
            if let Some(m) = self.ids.iter().position(|i| *i == member) {
                let cmd = InstanceCommand::JoinReplicaSetSwitch {
                    switch: (*switch).clone(),
                    eject: false,
                };
                self.execute(m, caller, &cmd)?;
            }
        }
        Ok(())
    }

    /// What the coordinator's saga records at the end of a switch: on every other
    /// member first, on itself last.
    fn finish_switch(&mut self, slot: usize, fail: bool) -> Check {
        let id = self.ids[slot];
        let s = self.fold(id);
        let Some(switch) = s.replica_switch.filter(|w| w.coordinator() == id) else {
            return Ok(());
        };
        let cmd = if fail {
            InstanceCommand::FailReplicaSetSwitch {
                fault: fault("Promote"),
                switch: switch.id(),
            }
        } else {
            InstanceCommand::CompleteReplicaSetSwitch {
                new_primary_id: id,
                switch: switch.id(),
            }
        };
        let mut order: Vec<Uuid> = switch.members().into_iter().filter(|m| *m != id).collect();
        order.push(id);
        for member in order {
            if let Some(m) = self.ids.iter().position(|i| *i == member) {
                self.execute(m, &saga(), &cmd)?;
            }
        }
        Ok(())
    }

    fn drive(&mut self, slot: usize, fail: bool) -> Check {
        use SagaStep::*;
        let s = self.fold(self.ids[slot]);
        let steps: Vec<SagaStep> = match s.task {
            Task::Building if fail => {
                vec![FailBuild, ServerDeleted, VolumeDeleted, ReleaseResources]
            }
            Task::Building => PROVISIONING.to_vec(),
            Task::Upgrading if fail => vec![FailUpgrade],
            Task::Upgrading => vec![Guest(ServiceStatus::Healthy), CompleteUpgrade],
            Task::Deleting => vec![ServerDeleted, VolumeDeleted, CompleteDeletion],
            Task::Detaching if fail => vec![FailReplicaDetach],
            Task::Detaching => vec![CompleteReplicaDetach],
            Task::Updating if fail => vec![FailAccessUpdate],
            Task::Updating => vec![CompleteAccessUpdate],
            Task::Promoting | Task::Ejecting => return self.finish_switch(slot, fail),
            _ if s.is_live()
                && s.guest_configuration
                    != Some((s.configuration_id, s.configuration_revision)) =>
            {
                vec![GuestConfiguration]
            }
            _ => vec![],
        };
        for step in &steps {
            self.saga(slot, step)?;
        }
        Ok(())
    }

    fn saga(&mut self, slot: usize, step: &SagaStep) -> Check {
        use InstanceCommand as C;
        let s = self.fold(self.ids[slot]);
        let cmd = match step {
            SagaStep::Volume => C::RecordVolumeCreated {
                volume_id: format!("vol-{slot}"),
                size: s.volume.as_ref().map_or(1, |v| v.size),
                volume_type: s.volume.as_ref().and_then(|v| v.volume_type.clone()),
            },
            SagaStep::Server => C::RecordServerCreated {
                server_id: format!("srv-{slot}"),
            },
            SagaStep::Compute(status) => C::RecordComputeStatus { status: *status },
            SagaStep::Addresses(n) => C::RecordAddresses {
                addresses: (0..*n)
                    .map(|i| Address {
                        address: format!("10.0.{slot}.{i}"),
                        kind: "private".into(),
                        network: Some("net-private".into()),
                        port: None,
                    })
                    .collect(),
            },
            SagaStep::Prepared => C::RecordGuestPrepared,
            SagaStep::Guest(status) => C::RecordGuestStatus { status: *status },
            SagaStep::Complete => C::CompleteProvisioning,
            SagaStep::GuestConfiguration => C::RecordGuestConfiguration {
                configuration_id: s.configuration_id,
                revision: s.configuration_revision,
                in_force: false,
            },
            SagaStep::FailBuild => C::FailProvisioning {
                task: Task::BuildingErrorServer,
                fault: fault("build"),
            },
            SagaStep::ReleaseResources => C::RecordResourcesReleased,
            SagaStep::CompleteUpgrade => C::CompleteUpgrade,
            SagaStep::FailUpgrade => C::FailUpgrade {
                fault: fault("upgrade"),
            },
            SagaStep::ApplyRevision { restart } => C::ApplyConfigurationRevision {
                configuration_id: s.configuration_id.unwrap_or(groups()[0].id),
                revision: s.configuration_revision + 1,
                restart_required: *restart,
            },
            SagaStep::ServerDeleted => C::RecordServerDeleted {
                server_id: s.server_id.clone().unwrap_or_else(|| format!("srv-{slot}")),
            },
            SagaStep::VolumeDeleted => C::RecordVolumeDeleted {
                volume_id: s.volume_id.clone().unwrap_or_else(|| format!("vol-{slot}")),
            },
            SagaStep::CompleteDeletion => C::CompleteDeletion,
            SagaStep::CompleteReplicaDetach => C::CompleteReplicaDetach,
            SagaStep::FailReplicaDetach => C::FailReplicaDetach {
                fault: fault("replica detach"),
            },
            SagaStep::CompleteAccessUpdate => C::CompleteAccessUpdate,
            SagaStep::FailAccessUpdate => C::FailAccessUpdate {
                fault: fault("access update"),
            },
        };
        self.execute(slot, &saga(), &cmd)
    }

    // ---- the properties ----------------------------------------------------------------

    /// (a) The live models equal a rebuild from the whole log.
    fn check_rebuild(&self) -> Check {
        let rebuilt = InstanceModels::from_events(&self.log);
        prop_assert_eq!(
            self.live.snapshot(),
            rebuilt.snapshot(),
            "live models differ from a rebuild of {} events",
            self.log.len()
        );
        Ok(())
    }

    /// (b) and (c): every record, page, usage and index agrees with the per-stream folds.
    fn check_against_folds(&self, page_limit: usize) -> Check {
        let folds = self.folds();
        let snapshot = self.live.snapshot();
        prop_assert_eq!(
            snapshot.records.keys().copied().collect::<BTreeSet<_>>(),
            folds.keys().copied().collect::<BTreeSet<_>>(),
            "the records are exactly the created instances"
        );
        for id in &self.ids {
            let expected = folds.get(id).cloned();
            prop_assert_eq!(self.live.instance(*id), expected, "record of {}", id);
            if let Some(rec) = snapshot.records.get(id) {
                let last = self.streams[id].last().map(|(p, _)| *p);
                prop_assert_eq!(Some(rec.position), last, "position of {}'s last event", id);
                prop_assert_eq!(
                    rec.quota_released,
                    self.deletion_requested(*id),
                    "quota released of {}",
                    id
                );
            }
            let replicas: Vec<Uuid> = folds
                .iter()
                .filter(|(_, s)| s.is_live() && s.replica_of == Some(*id))
                .map(|(r, _)| *r)
                .collect();
            prop_assert_eq!(
                self.live.live_replicas(*id),
                replicas,
                "live replicas of {}",
                id
            );
        }
        let mut all_projects: Vec<String> = self.projects.clone();
        all_projects.extend(["proj-admin".to_string(), "service".to_string()]);
        for project in &all_projects {
            self.check_list(project, &folds, page_limit)?;
            prop_assert_eq!(
                self.live.quota_usage(project),
                self.usage_from_folds(project),
                "quota usage of {}",
                project
            );
            self.check_mgmt(Some(project), &folds, page_limit)?;
        }
        self.check_mgmt(None, &folds, page_limit)
    }

    /// Pages through `project`'s list with `limit` and compares it with its live folds.
    fn check_list(&self, project: &str, folds: &BTreeMap<Uuid, Instance>, limit: usize) -> Check {
        let expected: Vec<Uuid> = folds
            .iter()
            .filter(|(_, s)| s.project_id == project && s.is_live())
            .map(|(id, _)| *id)
            .collect();
        let mut seen: Vec<Uuid> = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self.live.list_page(project, marker.as_deref(), limit);
            prop_assert!(
                page.instances
                    .windows(2)
                    .all(|w| w[0].created >= w[1].created),
                "{}: a page is ordered by created, newest first",
                project
            );
            let mut ids = Vec::new();
            for i in &page.instances {
                let id = i.id.unwrap_or_default();
                prop_assert_eq!(Some(i), folds.get(&id), "{}: listed {}", project, id);
                ids.push(id);
            }
            ids.sort();
            let remaining = expected.len() - seen.len();
            prop_assert_eq!(ids.len(), remaining.min(limit), "{}: page size", project);
            seen.extend(&ids);
            match page.next_marker {
                Some(m) => {
                    prop_assert!(
                        remaining > limit,
                        "{}: a next page only when one exists",
                        project
                    );
                    prop_assert_eq!(
                        Some(&m),
                        seen.last(),
                        "{}: marker is the page's last id",
                        project
                    );
                    marker = Some(m.to_string());
                }
                None => {
                    prop_assert!(remaining <= limit, "{}: more rows but no marker", project);
                    break;
                }
            }
        }
        prop_assert_eq!(seen, expected, "{}: the pages, in id order", project);
        Ok(())
    }

    /// The mgmt list pages, `limit` rows at a time, through every created instance
    /// (live and soft-deleted) of the filter, newest `updated` first (ties by id).
    fn check_mgmt(
        &self,
        project: Option<&str>,
        folds: &BTreeMap<Uuid, Instance>,
        limit: usize,
    ) -> Check {
        for deleted in [None, Some(true), Some(false)] {
            let filter = MgmtFilter {
                deleted,
                project: project.map(str::to_string),
            };
            let mut expected: Vec<(std::cmp::Reverse<DateTime<Utc>>, Uuid)> = folds
                .iter()
                .filter(|(_, s)| project.is_none_or(|p| s.project_id == p))
                .filter(|(_, s)| deleted.is_none_or(|d| s.deleted == d))
                .map(|(id, s)| (std::cmp::Reverse(s.updated), *id))
                .collect();
            expected.sort();
            for offset in (0..=expected.len()).step_by(limit) {
                let page = self.live.mgmt_page(&filter, offset, limit);
                prop_assert!(
                    page.windows(2).all(|w| w[0].created >= w[1].created),
                    "mgmt page of {:?} at {} is ordered by created, newest first",
                    filter,
                    offset
                );
                let mut got: Vec<Uuid> = page.iter().filter_map(|i| i.id).collect();
                got.sort();
                let end = (offset + limit).min(expected.len());
                let mut want: Vec<Uuid> = expected[offset..end].iter().map(|(_, id)| *id).collect();
                want.sort();
                prop_assert_eq!(got, want, "mgmt page of {:?} at {}", filter, offset);
                for i in &page {
                    prop_assert_eq!(Some(i), i.id.and_then(|id| folds.get(&id)));
                }
            }
        }
        Ok(())
    }
}

/// The catalog `decide` consults: static flavors, datastore and groups; instances,
/// replicas and quota usage from the per-stream folds (what the shell reads from its
/// models, here from the independent oracle).
impl Catalog for Harness {
    fn region(&self) -> &str {
        "RegionOne"
    }
    fn max_volume_size(&self) -> u64 {
        10
    }
    fn flavor(&self, id: &str) -> Option<Flavor> {
        let ram = match id {
            "7" => 2048,
            "8" => 4096,
            _ => return None,
        };
        Some(Flavor {
            id: id.into(),
            name: format!("flavor-{id}"),
            ram,
            vcpus: 1,
            disk: 20,
            ephemeral: 0,
        })
    }
    fn datastore(&self, id_or_name: &str) -> Option<Datastore> {
        let ds = datastore();
        (ds.id.to_string() == id_or_name || ds.name == id_or_name).then_some(ds)
    }
    fn default_datastore(&self) -> Option<String> {
        Some("mysql".into())
    }
    fn configuration_group(&self, id: Uuid) -> Option<ConfigurationGroup> {
        groups().into_iter().find(|g| g.id == id)
    }
    fn instance(&self, id: Uuid) -> Option<Instance> {
        Some(self.fold(id)).filter(Instance::exists)
    }
    fn live_replicas(&self, id: Uuid) -> usize {
        self.folds()
            .values()
            .filter(|s| s.is_live() && s.replica_of == Some(id))
            .count()
    }
    fn replica_ids(&self, id: Uuid) -> Vec<Uuid> {
        self.folds()
            .values()
            .filter(|s| s.is_live() && s.replica_of == Some(id))
            .filter_map(|s| s.id)
            .collect()
    }
    fn backup(&self, _id: Uuid) -> Option<Backup> {
        None
    }
    fn quota(&self, project_id: &str) -> QuotaUsage {
        let u = self.usage_from_folds(project_id);
        QuotaUsage {
            instances: u.instances,
            instances_limit: INSTANCES_LIMIT,
            ram: u.ram,
            ram_limit: RAM_LIMIT,
            volumes: u.volumes,
            volumes_limit: VOLUMES_LIMIT,
        }
    }
}

/// Runs a scenario, checking (b) and (c) after every operation and (a) at the end.
fn run_scenario(sc: &Scenario) -> Result<Harness, TestCaseError> {
    let mut h = Harness::new(sc.instances, sc.projects);
    for (n, op) in sc.ops.iter().enumerate() {
        h.run(op)
            .and_then(|()| h.check_against_folds(sc.page_limit))
            .map_err(|e| match e {
                TestCaseError::Fail(why) => {
                    TestCaseError::fail(format!("after operation #{n} {op:?}: {why}"))
                }
                other => other,
            })?;
    }
    h.check_rebuild()?;
    Ok(h)
}

proptest! {
    #![proptest_config(ProptestConfig {
        // 128 by default (a few seconds); `PROPTEST_CASES=N` explores more.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(128),
        // Shrunk failures are reported in the test output; nothing is written to disk.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn live_models_equal_the_rebuild_and_the_per_stream_folds(sc in scenario()) {
        run_scenario(&sc)?;
    }
}

/// Guards the generator: over a fixed set of scenarios, the commands the properties are
/// about are accepted (and some refused) often enough to mean something.
#[test]
fn scenarios_reach_every_kind_of_event() {
    let mut runner = TestRunner::deterministic();
    let strategy = scenario();
    let mut appended: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut refused: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..64 {
        let sc = strategy
            .new_tree(&mut runner)
            .expect("a scenario generates")
            .current();
        let h = run_scenario(&sc).unwrap_or_else(|e| panic!("{sc:#?}\n{e}"));
        for (k, n) in h.appended {
            *appended.entry(k).or_default() += n;
        }
        for (k, n) in h.refused {
            *refused.entry(k).or_default() += n;
        }
    }
    // What the properties are about: at least a handful of each over these scenarios.
    let core = [
        "InstanceCreated",
        "InstanceRenamed",
        "VolumeCreated",
        "ServerCreated",
        "ComputeStatusChanged",
        "AddressesAssigned",
        "GuestPrepared",
        "GuestStatusReported",
        "GuestConfigurationApplied",
        "ProvisioningCompleted",
        "ProvisioningFailed",
        "ResourcesReleased",
        "ConfigurationAttached",
        "ConfigurationDetached",
        "ConfigurationRevisionApplied",
        "DatastoreVersionUpgradeRequested",
        "DatastoreVersionUpgraded",
        "DatastoreVersionUpgradeFailed",
        "AccessUpdateRequested",
        "AccessUpdated",
        "InstanceDeletionRequested",
        "ServerDeleted",
        "VolumeDeleted",
        "InstanceDeleted",
    ];
    // Rarer paths (a replica must find a ready primary, then be built itself).
    let rare = ["ReplicaDetachRequested", "ReplicaDetached"];
    for (kinds, at_least) in [(&core[..], 5), (&rare[..], 1)] {
        for kind in kinds {
            let n = appended.get(kind).copied().unwrap_or(0);
            assert!(
                n >= at_least,
                "{kind} appended {n} times, fewer than {at_least}: {appended:?}"
            );
        }
    }
    for name in [
        "CreateInstance",
        "AttachConfiguration",
        "UpgradeDatastoreVersion",
        "DeleteInstance",
    ] {
        assert!(
            refused.get(name).copied().unwrap_or(0) >= 5,
            "{name} refused too rarely: {refused:?}"
        );
    }
    eprintln!("appended: {appended:?}\nrefused: {refused:?}");
}

/// A replica set's switch writes on three streams: the replicas index follows every
/// member's `replica_of`, and a rebuild from the log agrees after the promote, after a
/// failed one, at every step.
#[test]
fn a_promote_moves_the_replicas_index_and_the_rebuild_agrees() {
    let pick = any::<Index>()
        .new_tree(&mut TestRunner::deterministic())
        .expect("an index")
        .current();
    let spec = |replica: bool| CreateSpec {
        project: 0,
        flavor: 0,
        volume: 1,
        version: 0,
        configuration: None,
        replica_of: replica.then_some(pick),
        access: false,
        flaw: None,
    };
    let mut h = Harness::new(3, 1);
    let step = |h: &Harness| {
        h.check_against_folds(2)
            .expect("models agree with the folds");
        h.check_rebuild().expect("a rebuild agrees");
    };
    h.create(0, &spec(false)).unwrap();
    h.drive(0, false).unwrap();
    for slot in [1, 2] {
        h.create(slot, &spec(true)).unwrap();
        h.drive(slot, false).unwrap();
    }
    let [a, b, c] = [h.ids[0], h.ids[1], h.ids[2]];
    assert_eq!(h.fold(b).replica_of, Some(a), "the replicas are built");
    step(&h);

    h.user(1, Who::Owner, &UserCmd::Promote).unwrap();
    for id in [a, b, c] {
        assert_eq!(h.fold(id).task, Task::Promoting, "every member switches");
    }
    step(&h);
    h.drive(1, false).unwrap();
    assert_eq!(
        [a, b, c].map(|id| h.fold(id).replica_of),
        [Some(b), None, Some(b)]
    );
    let mut want = vec![a, c];
    want.sort();
    assert_eq!(
        h.live.live_replicas(b),
        want,
        "the index names the new source's replicas"
    );
    assert!(h.live.live_replicas(a).is_empty());
    step(&h);

    h.user(0, Who::Owner, &UserCmd::Promote).unwrap();
    h.drive(0, true).unwrap();
    for id in [a, b, c] {
        assert_eq!(h.fold(id).task, Task::PromotionError, "every member failed");
    }
    assert_eq!(h.fold(a).replica_of, Some(b), "topology as before");
    step(&h);
}
