//! `evolve`: applies one event to the state. Total: an event is a fact.

use super::event::ConfigurationEvent;
use super::parameters::restart_required;
use super::state::Configuration;

/// Applies one event.
pub fn evolve(mut s: Configuration, event: &ConfigurationEvent) -> Configuration {
    s.version += 1;
    match event {
        ConfigurationEvent::ConfigurationCreated(c) => {
            return Configuration {
                id: Some(c.configuration_id),
                project_id: c.project_id.clone(),
                user_id: c.user_id.clone(),
                name: c.name.clone(),
                description: c.description.clone(),
                datastore: c.datastore.clone(),
                values: c.values.clone(),
                created: c.at,
                updated: c.at,
                deleted: false,
                deleted_at: None,
                version: s.version,
                restart_required_since: 0,
            };
        }
        ConfigurationEvent::ConfigurationUpdated {
            name,
            description,
            values,
            at,
        } => {
            let changed: Vec<&str> = s
                .values
                .keys()
                .chain(values.keys())
                .filter(|k| s.values.get(*k) != values.get(*k))
                .map(String::as_str)
                .collect();
            if restart_required(&s.datastore.manager, changed) {
                s.restart_required_since = s.version;
            }
            s.name = name.clone();
            s.description = description.clone();
            s.values = values.clone();
            s.updated = *at;
        }
        ConfigurationEvent::ConfigurationDeleted { at } => {
            s.deleted = true;
            s.deleted_at = Some(*at);
            s.updated = *at;
        }
    }
    s
}

/// Folds a sequence of events from the empty state.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a ConfigurationEvent>) -> Configuration {
    events.into_iter().fold(Configuration::default(), evolve)
}
