fn main() {
    ipc::init();
}
