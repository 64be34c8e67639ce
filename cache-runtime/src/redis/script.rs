//! Lua scripts, called by their SHA1 and loaded where a node lacks them.

use std::sync::OnceLock;

use ::redis::{ErrorKind, Pipeline, RedisResult, Script, ServerErrorKind, Value};

use super::Connection;

/// A Lua script, called by its SHA1 (`EVALSHA`) and loaded where it is missing.
pub(crate) struct Lua {
    code: &'static str,
    sha: OnceLock<String>,
}

impl Lua {
    pub(crate) const fn new(code: &'static str) -> Self {
        Self {
            code,
            sha: OnceLock::new(),
        }
    }

    /// Appends `EVALSHA <sha>` to `pipeline`; the key count, keys and arguments follow.
    pub(crate) fn call<'p>(&self, pipeline: &'p mut Pipeline) -> &'p mut Pipeline {
        let sha = self
            .sha
            .get_or_init(|| Script::new(self.code).get_hash().to_owned());
        pipeline.cmd("EVALSHA").arg(sha)
    }
}

/// Runs `pipeline`, whose scripts are `EVALSHA`s of `lua` on the slot of `key`. A node without
/// the script (restarted, or a replica just promoted: script caches are not replicated) gets
/// it loaded, and the pipeline runs again.
pub(crate) async fn with_script(
    mut conn: Connection,
    lua: &Lua,
    key: &str,
    pipeline: &Pipeline,
) -> RedisResult<Vec<Value>> {
    match pipeline.query_async(&mut conn).await {
        Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            let mut load = ::redis::cmd("SCRIPT");
            load.arg("LOAD").arg(lua.code);
            conn.command_at_key(key, load).await?;
            pipeline.query_async(&mut conn).await
        }
        other => other,
    }
}
