//! Child processes that die with the test binary: servers and example API processes started
//! by tests never outlive it, even when it is killed.

use std::ffi::OsStr;
use std::io;
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};

/// A command for `program` that the kernel kills when the test process dies (`setpriv
/// --pdeathsig KILL` where available); start it with [`spawn_tied`].
pub fn tied_command(program: impl AsRef<OsStr>) -> Command {
    if pdeathsig_supported() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Whether `setpriv --pdeathsig` works here (Linux, util-linux installed).
fn pdeathsig_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        cfg!(target_os = "linux")
            && Command::new("setpriv")
                .args(["--pdeathsig", "KILL", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
    })
}

/// A request to the spawner thread and the channel for its answer.
type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` (made by [`tied_command`]) from a dedicated thread that lives as long as the
/// process.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits. Test threads end
/// after each test, which would kill children shared between tests, so children are forked from
/// this long-lived thread instead; its death (at process exit, even by `SIGKILL`) then takes
/// them down.
///
/// # Errors
/// When the command cannot be started.
pub fn spawn_tied(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .ok()
            .map(|_| tx)
    });
    let Some(spawner) = spawner else {
        let mut cmd = cmd;
        return cmd.spawn();
    };
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}
