//! Configuration: the TOML file and the Pulsar/KoP properties file with its aliases
//! ([`config`]).

use std::path::Path;

use magnetar::config::{Config, FlagOverrides};

/// Input: a byte choosing the syntax (bit 0: properties, else TOML), then the file's text.
///
/// Properties of a text that loads: the config passes `validate` again; written back as TOML
/// (with `version = 1`) it loads to the same config.
pub fn config(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    // TLS files named by an input are read when TLS is on: keep inputs away from paths that
    // never end (e.g. /dev/zero) by refusing any that names a device file.
    if text.contains("/dev/") || text.contains("/proc/") {
        return;
    }
    let path = if which & 1 == 0 {
        Path::new("fuzz.toml")
    } else {
        Path::new("fuzz.conf")
    };
    let Ok(loaded) = Config::load_text(Some((path, text)), [], &FlagOverrides::default()) else {
        return;
    };
    loaded
        .config
        .validate()
        .expect("a loaded config validates again");
    let mut table = toml::Table::try_from(&loaded.config).expect("a config serializes");
    table.insert("version".into(), toml::Value::Integer(1));
    let written = toml::to_string(&table).expect("a config writes as toml");
    let again = Config::load_text(
        Some((Path::new("again.toml"), &written)),
        [],
        &FlagOverrides::default(),
    )
    .unwrap_or_else(|e| panic!("a written config does not load: {e}\n{written}"));
    assert_eq!(again.config, loaded.config, "config round trip");
}
