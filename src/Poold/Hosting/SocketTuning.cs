namespace Poold.Hosting;

/// <summary>
/// How .NET's socket engine runs Poold's continuations. By default a socket event is handed from the epoll thread to
/// the thread pool, so every read a session waits for costs a thread wake-up and a context switch; Poold's
/// continuations are short and never block (frames are relayed, not processed), so they run on the epoll threads
/// themselves, one per core, as an event loop would. Measured on 2 cores with pgbench -S through Poold (with the
/// reply pump woken synchronously): 51 µs of Poold CPU and 2.3 context switches per transaction before, 31 µs and
/// 0.8 after. Nothing may block on those threads: see the README's "hot path".
/// </summary>
internal static class SocketTuning
{
    /// <summary>Read once by the socket engine when the first socket is created.</summary>
    public const string InlineCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>Turns inline completions on unless the environment already says (an operator's "0" wins).</summary>
    public static void Apply()
    {
        if (Environment.GetEnvironmentVariable(InlineCompletions) is null)
        {
            Environment.SetEnvironmentVariable(InlineCompletions, "1");
        }
    }
}
