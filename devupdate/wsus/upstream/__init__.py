"""The upstream role (USS) of MS-WSUSSS ([wsus] §1b, §5.1, §5.2): downstream servers sync this
server's catalog, deployments and content, and roll their computers' status up to it."""
