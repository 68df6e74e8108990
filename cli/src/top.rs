//! `supervisor top [PID]`: a live full-screen view of a running supervisor
//! (ratatui over crossterm), fed by its control socket four times a
//! second: totals, a sparkline of tasks per second, the worker table.
//! Keys: up/down (or j/k) select a worker, `x` kills it, `+`/`-` scale,
//! `q`, Esc or Ctrl-C quit. The terminal is restored on every way out,
//! and when the supervisor ends the view says so and exits. It fits an
//! 80x24 terminal.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Sparkline, Table, TableState};
use ratatui::{DefaultTerminal, Frame};

use outlast::control::client;
use outlast::control::{Command, Reply, Status, WorkerRef};

/// How often the view asks for a status.
const REFRESH: Duration = Duration::from_millis(250);
/// Sparkline samples kept.
const HISTORY: usize = 120;

struct View {
    status: Status,
    rates: VecDeque<u64>,
    last_done: Option<(u64, Instant)>,
    table: TableState,
    /// The answer to the last key's command, shown in the footer.
    note: String,
}

/// Runs the view until the user quits or the supervisor ends; the exit code.
pub fn run(pid: Option<u32>, control: Option<std::path::PathBuf>) -> u8 {
    let path = match control.map_or_else(|| client::socket_of(pid), Ok) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("supervisor top: {e}");
            return 1;
        }
    };
    let Some(status) = fetch(&path) else {
        eprintln!(
            "supervisor top: no supervisor answers at {}",
            path.display()
        );
        return 1;
    };
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("supervisor top: cannot use this terminal: {e}");
            return 1;
        }
    };
    let mut view = View {
        status,
        rates: VecDeque::new(),
        last_done: None,
        table: TableState::default().with_selected(Some(0)),
        note: String::new(),
    };
    let outcome = run_view(&mut terminal, &path, &mut view);
    ratatui::restore();
    match outcome {
        Ok(Ended::Quit) => 0,
        Ok(Ended::SupervisorGone) => {
            println!("supervisor {} ended", view.status.pid);
            0
        }
        Err(e) => {
            eprintln!("supervisor top: {e}");
            1
        }
    }
}

enum Ended {
    Quit,
    SupervisorGone,
}

fn fetch(path: &Path) -> Option<Status> {
    match client::send(path, Command::Status) {
        Ok(Reply {
            status: Some(status),
            ..
        }) => Some(status),
        _ => None,
    }
}

fn run_view(
    terminal: &mut DefaultTerminal,
    path: &Path,
    view: &mut View,
) -> std::io::Result<Ended> {
    let mut next = Instant::now();
    loop {
        if Instant::now() >= next {
            next = Instant::now() + REFRESH;
            match fetch(path) {
                Some(status) => view.update(status),
                None => return Ok(Ended::SupervisorGone),
            }
            terminal.draw(|frame| draw(frame, view))?;
        }
        let wait = next.saturating_duration_since(Instant::now());
        if !event::poll(wait)? {
            continue;
        }
        let Event::Key(key) = event::read()? else {
            // A resize: draw at once.
            next = Instant::now();
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        let workers = view.status.workers.len();
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Ok(Ended::Quit),
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                return Ok(Ended::Quit)
            }
            KeyCode::Down | KeyCode::Char('j') => {
                let i = view.table.selected().unwrap_or(0);
                view.table
                    .select(Some((i + 1).min(workers.saturating_sub(1))));
            }
            KeyCode::Up | KeyCode::Char('k') => {
                let i = view.table.selected().unwrap_or(0);
                view.table.select(Some(i.saturating_sub(1)));
            }
            KeyCode::Char('x') => {
                if let Some(w) = view
                    .table
                    .selected()
                    .and_then(|i| view.status.workers.get(i))
                {
                    let command = Command::Kill {
                        worker: WorkerRef::Slot(w.slot),
                        signal: libc::SIGKILL,
                    };
                    view.note = answer(client::send(path, command));
                }
            }
            KeyCode::Char('+') | KeyCode::Char('=') => {
                let workers = view.status.workers_target + 1;
                view.note = answer(client::send(path, Command::Scale { workers }));
            }
            KeyCode::Char('-') => {
                let workers = view.status.workers_target.saturating_sub(1).max(1);
                view.note = answer(client::send(path, Command::Scale { workers }));
            }
            _ => {}
        }
        next = Instant::now();
    }
}

fn answer(reply: Result<Reply, client::ClientError>) -> String {
    match reply {
        Ok(r) if r.ok => r.done.unwrap_or_default(),
        Ok(r) => r.error.unwrap_or_default(),
        Err(e) => e.to_string(),
    }
}

impl View {
    fn update(&mut self, status: Status) {
        let now = Instant::now();
        if let Some((done, at)) = self.last_done {
            let secs = now.duration_since(at).as_secs_f64().max(1e-3);
            let rate = status.tasks.done.saturating_sub(done) as f64 / secs;
            self.rates.push_back(rate as u64);
            while self.rates.len() > HISTORY {
                self.rates.pop_front();
            }
        }
        self.last_done = Some((status.tasks.done, now));
        self.status = status;
    }
}

fn draw(frame: &mut Frame, view: &mut View) {
    let s = &view.status;
    let [head, spark, table, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(4),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let live = s.workers.iter().filter(|w| w.pid.is_some()).count();
    let header = vec![
        Line::from(format!(
            "supervisor {} · {} · {:.1} s · {live}/{} workers",
            s.pid, s.phase, s.elapsed_s, s.workers_target
        )),
        Line::from(format!(
            "tasks {}/{} done · {} re-queued · {} dead · {:.0}/s",
            s.tasks.done, s.tasks.total, s.tasks.requeued, s.tasks.dead, s.tasks.per_s
        )),
        Line::from(format!(
            "IPC {} messages · {:.0} msgs/s · {:.1} MB/s · {}",
            s.ipc.messages, s.ipc.messages_per_s, s.ipc.mb_per_s, s.job
        )),
    ];
    frame.render_widget(Paragraph::new(header), head);
    let rates: Vec<u64> = view.rates.iter().copied().collect();
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title("tasks/s"))
            .data(&rates),
        spark,
    );
    let rows = s.workers.iter().map(|w| {
        let dash = || "-".to_string();
        Row::new(vec![
            w.slot.to_string(),
            w.pid.map_or_else(dash, |p| p.to_string()),
            w.state.clone(),
            w.task.map_or_else(dash, |t| t.to_string()),
            w.task_ms.map_or_else(dash, |ms| format!("{ms}ms")),
            w.tasks_done.to_string(),
            w.rss_kb
                .map_or_else(dash, |kb| format!("{:.0}M", kb as f64 / 1024.0)),
            w.cpu_percent.map_or_else(dash, |c| format!("{c:.0}%")),
            w.restarts.to_string(),
            w.last_exit.clone().unwrap_or_default(),
        ])
    });
    let widths = [
        Constraint::Length(4),
        Constraint::Length(7),
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(4),
        Constraint::Length(3),
        Constraint::Min(10),
    ];
    let table_widget = Table::new(rows, widths)
        .header(
            Row::new(vec![
                "slot",
                "pid",
                "state",
                "task",
                "for",
                "done",
                "rss",
                "cpu",
                "rst",
                "last exit",
            ])
            .style(Style::new().add_modifier(Modifier::BOLD)),
        )
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .block(Block::bordered().title("workers"));
    frame.render_stateful_widget(table_widget, table, &mut view.table);
    let keys = if view.note.is_empty() {
        "↑↓ select · x kill · + - scale · q quit".to_string()
    } else {
        format!("{} · ↑↓ x + - q", view.note)
    };
    frame.render_widget(Paragraph::new(keys), foot);
}
