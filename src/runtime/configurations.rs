//! The command path of the ConfigurationGroup aggregate (streams `configuration-<uuid>`),
//! beside the instance one in [`commands`](super::commands): the decide context (clock,
//! caller, lookups, attached instances), the event encoding and the fold, run through
//! [`CommandBus::run`].

use aggregates::configuration::{
    self, Configuration, ConfigurationCommand, ConfigurationError, ConfigurationEvent, DecideCtx,
};
use aggregates::instance::Caller;
use chrono::Utc;
use uuid::Uuid;

use super::codec::{self, CodecError, CommandMeta};
use super::commands::{CommandBus, CommandError, StreamCommand};
use super::lookups::Lookups;
use crate::metrics::CommandOutcome;
use crate::store::{NewEvent, RecordedEvent};

impl CommandBus {
    /// Runs one command on configuration group `id`: fold, decide, append, wait for the
    /// read models (so the caller's next read sees it). Returns the group after it.
    pub async fn execute_configuration(
        &self,
        id: Uuid,
        cmd: &ConfigurationCommand,
        caller: &Caller,
        meta: &CommandMeta,
    ) -> Result<Configuration, CommandError> {
        let command = ConfigurationCommandRun {
            id,
            cmd,
            caller,
            meta,
            lookups: self.lookups(),
        };
        let done = self
            .run(&configuration::stream_name(id), None, &command)
            .await;
        crate::metrics::global().commands([cmd.name()], CommandOutcome::from(&done));
        Ok(done?.state)
    }
}

/// One command on a configuration group, as the command path performs it.
struct ConfigurationCommandRun<'a> {
    id: Uuid,
    cmd: &'a ConfigurationCommand,
    caller: &'a Caller,
    meta: &'a CommandMeta,
    lookups: &'a Lookups,
}

impl StreamCommand for ConfigurationCommandRun<'_> {
    type State = Configuration;
    type Event = ConfigurationEvent;

    fn fold(&self, records: &[RecordedEvent]) -> Result<Configuration, CommandError> {
        fold_configuration(records)
    }

    fn decide(&self, group: &Configuration) -> Result<Vec<ConfigurationEvent>, CommandError> {
        let ctx = DecideCtx {
            now: Utc::now(),
            configuration_id: self.id,
            caller: self.caller,
            catalog: self.lookups,
            // Read at each attempt. An attach racing a delete can still slip between
            // this read and the append, as upstream (no lock either).
            attached_instances: self.lookups.configurations.instance_count(self.id, None),
        };
        configuration::decide(group, self.cmd, &ctx).map_err(rejected)
    }

    fn encode(&self, event: &ConfigurationEvent, _index: usize) -> NewEvent {
        let (event_type, version, data) = event.encode();
        codec::encode_parts(event_type, version, &data, event.at(), self.meta)
    }

    fn evolve(&self, group: Configuration, event: &ConfigurationEvent) -> Configuration {
        configuration::evolve(group, event)
    }
}

/// A refusal of the configuration aggregate, in its Trove fault class.
fn rejected(e: ConfigurationError) -> CommandError {
    CommandError::Rejected(e.fault(), e.to_string())
}

/// Folds a configuration stream (the source of truth for a command).
pub fn fold_configuration(records: &[RecordedEvent]) -> Result<Configuration, CommandError> {
    let mut group = Configuration::default();
    for r in records {
        let event = codec::decode_parts(r).and_then(|(data, meta)| {
            Ok(configuration::decode(
                &r.event_type,
                meta.schema_version,
                data,
            )?)
        });
        let event = event.map_err(|e: CodecError| CommandError::unreadable(r, e))?;
        group = configuration::evolve(group, &event);
    }
    Ok(group)
}
