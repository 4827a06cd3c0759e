//! Process entry: arguments -> settings -> logging -> backend -> supervisor; exit codes.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::SUCCESS
}
