//! The MongoDB stand-in for the end-to-end tests
//! (`tests/servers/mongo_stand_in.py`: MockupDB's wire protocol, mongomock's
//! data), run by the venv `tests/servers/ensure-mongo-stand-in.sh` makes
//! (`scripts/install-deps.sh test` makes it first), and the service that
//! calls it with Debian's pymongo (`tests/servers/mongo_app.py`).
//!
//! Each test starts its own stand-in (about 0.3 s): its data then holds only
//! what that test's scenarios wrote.

use crate::{venv_python, Server};

/// A running stand-in, and the service calling it.
pub struct MongoSetup {
    pub stand_in: Server,
    pub app: Server,
}

/// Starts a stand-in on a free port, then `mongo_app.py` pointed at it.
pub fn start_mongo() -> MongoSetup {
    start(false)
}

/// [`start_mongo`] with the stand-in speaking TLS only, and the service
/// connecting with TLS (Python's `ssl`: OpenSSL).
pub fn start_mongo_over_tls() -> MongoSetup {
    start(true)
}

fn start(tls: bool) -> MongoSetup {
    let python = venv_python("ensure-mongo-stand-in.sh");
    let stand_in = Server::script(&python, "mongo_stand_in.py", &tls_arg(tls), &[]);
    let mut env = vec![("ZT_MONGO_PORT", stand_in.port.to_string())];
    if tls {
        env.push(("ZT_MONGO_TLS", "1".to_owned()));
    }
    let app = Server::script("/usr/bin/python3", "mongo_app.py", &[], &env);
    MongoSetup { stand_in, app }
}

fn tls_arg(tls: bool) -> Vec<&'static str> {
    if tls {
        vec!["--tls"]
    } else {
        Vec::new()
    }
}
