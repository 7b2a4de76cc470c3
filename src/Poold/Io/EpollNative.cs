using System.Runtime.InteropServices;

namespace Poold.Io;

/// <summary>
/// The epoll calls of Linux's libc. <c>struct epoll_event</c> is packed on x86-64 (12 bytes: the 32-bit event mask, then
/// the 64-bit data) and naturally aligned elsewhere (16 bytes), so events are read and written through
/// <see cref="EventSize"/> and <see cref="DataOffset"/> rather than a struct whose layout would fit one of the two.
/// </summary>
internal static unsafe partial class EpollNative
{
    public const uint EpollIn = 0x001;
    public const uint EpollOut = 0x004;
    public const uint EpollErr = 0x008;
    public const uint EpollHup = 0x010;
    public const uint EpollRdHup = 0x2000;
    public const uint EpollEt = 1u << 31;

    public const int CtlAdd = 1;
    public const int CtlDel = 2;

    private const int EpollCloexec = 0x80000;
    public const int Eintr = 4;

    public static readonly int EventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;

    public static readonly int DataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

    public static int Create() => EpollCreate1(EpollCloexec);

    /// <summary>Adds or removes <paramref name="fd"/>; returns 0 or the errno.</summary>
    public static int Control(int epfd, int op, int fd, uint events, ulong data)
    {
        var buffer = stackalloc byte[16];
        *(uint*)buffer = events;
        *(ulong*)(buffer + DataOffset) = data;
        return EpollCtl(epfd, op, fd, buffer) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    [LibraryImport("libc", EntryPoint = "epoll_create1", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static partial int EpollCreate1(int flags);

    [LibraryImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static partial int EpollCtl(int epfd, int op, int fd, byte* ev);

    /// <summary>Waits for events into <paramref name="events"/> (room for <paramref name="maxEvents"/>); -1 with the errno set on failure.</summary>
    [LibraryImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    public static partial int EpollWait(int epfd, byte* events, int maxEvents, int timeout);

    public const short PollIn = 0x001;
    public const short PollOut = 0x004;
    public const short PollErr = 0x008;
    public const short PollHup = 0x010;
    public const short PollRdHup = 0x2000;

    /// <summary><c>struct pollfd</c>: the same layout on every Linux architecture.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Returned;
    }

    /// <summary>Asks the readiness of <paramref name="count"/> descriptors at once, without waiting; -1 with the errno set on failure.</summary>
    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    public static partial int Poll(PollFd* fds, nuint count, int timeout);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    public static partial int Close(int fd);
}
