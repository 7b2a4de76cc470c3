using System.Runtime.InteropServices;

namespace Poold.Io;

/// <summary>
/// Poold's own socket event loop on Linux: a few event threads (one per core, at most four), each waiting in
/// <c>epoll_wait</c> on an epoll instance of its own. A <see cref="SocketStream"/> is registered once, round-robin,
/// edge-triggered for input, output and hang-up; an event sets the stream's readiness flags and completes the read or
/// write parked on it, whose continuation runs right there, on the event thread (as .NET's engine does with inline
/// completions, see Hosting/SocketTuning): nothing may block on these threads.
/// <para>
/// An event carries no pointer: its data is a registration token, the slot index in the low 32 bits and the slot's
/// generation in the high 32. The slot holds the stream; a stream freed (and its slot reused) after epoll_wait returned
/// one of its events no longer carries that token, and the event is dropped. The table grows in fixed chunks that never
/// move, so the event threads read it without a lock; registering and unregistering (once per connection) take one.
/// </para>
/// <para>
/// A watchdog (<see cref="Sweep"/>, every <see cref="SweepPeriod"/>) is the layer's safety net and its witness: an
/// operation parked with no edge since, on a socket that poll(2) finds ready at two sweeps in a row, lost its wake-up;
/// it is woken from there, counted (<see cref="LostWakeups"/>) and reported (<see cref="Warn"/>). An event thread that
/// has spent longer than a period in one batch of events (a continuation that blocks it) is reported too. One poll(2)
/// over the parked sockets per sweep: with ten thousand idle clients, a few milliseconds of CPU each time.
/// </para>
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "an engine lives as long as the process: its event threads and its watchdog's timer with it")]
internal sealed unsafe class EpollEngine
{
    private const int ChunkBits = 10;
    private const int ChunkSize = 1 << ChunkBits;
    private const int MaxEvents = 256;

    private static readonly Lazy<EpollEngine> SharedEngine = new(() => new EpollEngine(ConfiguredThreads(), start: true));

    /// <summary>
    /// The event threads: <c>POOLD_IO_THREADS</c> (1–64) when set, else one per core, at most four. Measured on 2 cores
    /// (bench/hot-path.sh): one thread costs less CPU per transaction with few busy clients (pgbench <c>-S</c>, 16
    /// clients, session mode: 35 µs against 44, from a third of the voluntary context switches), but with 1,000
    /// clients in transaction mode it did no better (0.87x PgBouncer's TPS against 0.86x with two), and
    /// bench/compare-tx.sh with one thread came out lower on every goal row: the default stays one per core. Since a
    /// session's server connection joins its client's thread, an A/B of the two counts within one run (BASELINE_IO_THREADS)
    /// gave two threads the higher TPS in every round, in session mode and in transaction mode; one thread saved a few µs
    /// of CPU per transaction in session mode only.
    /// </summary>
    internal static int ConfiguredThreads() =>
        int.TryParse(Environment.GetEnvironmentVariable("POOLD_IO_THREADS"), out var count) && count is >= 1 and <= 64
            ? count
            : Math.Clamp(Environment.ProcessorCount, 1, 4);

    /// <summary>
    /// How many times an event thread that finds no event gives up its core (<c>sched_yield</c>) and looks again before
    /// it sleeps in <c>epoll_wait</c>: <c>POOLD_IO_YIELD</c> (0–16) when set, else 1. The thread usually runs out of
    /// events right after it has sent something, a statement to a server or a reply to a client; the process it woke
    /// often runs on the same core, so a yield lets it answer, and the next look finds the answer without a sleep and a
    /// wake-up (an inter-processor interrupt, costly in a virtual machine). Where no other thread waits for the core, the
    /// yield returns at once: a thread that goes to sleep makes 2N + 1 system calls more than it did (a look, then a
    /// yield and a look per yield). Measured on 2 cores (bench/hot-path.sh, A/B in one run against 0): pgbench <c>-S</c>, 16 clients, session mode, 13,177 against 11,914 TPS (higher in each of
    /// three rounds) at the same CPU per transaction, voluntary context switches 30 against 55 per 100 transactions;
    /// transaction mode, 200 clients, 10,607 against 9,483 (two rounds of three); 1,000 clients and 2 clients, no
    /// difference beyond the noise. Three yields against one, in another run: 12,219 against 11,164 TPS in the median
    /// but one round of three the other way, at 43 against 46 µs; not clearly better, and each costs two more system
    /// calls before a sleep.
    /// </summary>
    internal static int ConfiguredYields(string? setting) =>
        int.TryParse(setting, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var count) && count is >= 0 and <= 16
            ? count
            : 1;

    private static readonly int YieldsBeforeSleep = ConfiguredYields(Environment.GetEnvironmentVariable("POOLD_IO_YIELD"));

    /// <summary>How often the watchdog looks (see the type's summary).</summary>
    internal static readonly TimeSpan SweepPeriod = TimeSpan.FromSeconds(2);

    /// <summary>Where the watchdog's findings go (the host's log); nowhere until the host sets it.</summary>
    public static Action<string>? Warn { get; set; }

    /// <summary>The process's engine, started at first use.</summary>
    public static EpollEngine Shared => SharedEngine.Value;

    private readonly int[] _epollFds;
    private readonly Lock _slotsLock = new();

    /// <summary>Chunks of slots; replaced by a longer array on growth, the chunks themselves shared and never moved.</summary>
    private SocketStream?[][] _chunks = [];
    private uint[][] _generations = [];
    private readonly Stack<int> _free = new();
    private int _nextSlot;
    private int _nextThread;
    private int _registered;

    /// <summary>Per event thread: when it started handling its current batch of events (Environment.TickCount64), 0 while it waits.</summary>
    private readonly long[] _busySince;
    private readonly long[] _busyReported;
    private readonly Timer? _watchdog;
    private int _sweeping;
    private long _lostWakeups;

    /// <summary>Parked operations found ready at the last sweep: lost wake-ups if they are still parked, the same way, at the next.</summary>
    private HashSet<(SocketStream Stream, bool Write, short Version)> _suspects = [];
    private readonly List<(SocketStream Stream, bool Write, short Version)> _candidates = [];
    private EpollNative.PollFd[] _pollFds = [];

    /// <summary>
    /// <paramref name="start"/> false (tests): no event thread and no watchdog timer; nothing is delivered but what
    /// <see cref="Sweep"/> finds.
    /// </summary>
    internal EpollEngine(int threads, bool start)
    {
        _epollFds = new int[threads];
        _busySince = new long[threads];
        _busyReported = new long[threads];
        for (var i = 0; i < threads; i++)
        {
            var fd = EpollNative.Create();
            if (fd < 0)
            {
                throw new IOException($"epoll_create1 failed: errno {Marshal.GetLastPInvokeError()}");
            }

            _epollFds[i] = fd;
        }

        if (!start)
        {
            return;
        }

        for (var i = 0; i < threads; i++)
        {
            var index = i;
            new Thread(() => Loop(index)) { IsBackground = true, Name = $"poold epoll {i}" }.Start();
        }

        _watchdog = new Timer(static e => ((EpollEngine)e!).Sweep(), this, SweepPeriod, SweepPeriod);
    }

    /// <summary>Closes the epoll descriptors of an engine made without event threads (tests); a started engine is the process's.</summary>
    internal void Close()
    {
        if (_watchdog is null)
        {
            foreach (var fd in _epollFds)
            {
                EpollNative.Close(fd);
            }
        }
    }

    /// <summary>Wake-ups the watchdog found lost (and gave) since start.</summary>
    public long LostWakeups => Interlocked.Read(ref _lostWakeups);

    public int ThreadCount => _epollFds.Length;

    /// <summary>The event threads' epoll descriptors (tests read what each watches from /proc/self/fdinfo).</summary>
    internal IReadOnlyList<int> EpollDescriptors => _epollFds;

    /// <summary>Streams registered now (for tests and diagnostics).</summary>
    public int Registered => Volatile.Read(ref _registered);

    /// <summary>
    /// How many registered streams satisfy <paramref name="match"/> (for tests and diagnostics: a count of all streams
    /// would include other instances' sockets, and ones being released). Reads the slots without the lock.
    /// </summary>
    public int Count(Func<SocketStream, bool> match)
    {
        var count = 0;
        foreach (var chunk in Volatile.Read(ref _chunks))
        {
            foreach (var stream in chunk)
            {
                if (stream is not null && match(stream))
                {
                    count++;
                }
            }
        }

        return count;
    }

    /// <summary>
    /// Takes a free slot and an event thread (round-robin) and returns the slot's token and that thread's epoll
    /// descriptor. The slot stays empty, so no event is delivered, until <see cref="Publish"/>.
    /// </summary>
    public (ulong Token, int EpollFd) Reserve()
    {
        int slot;
        uint generation;
        lock (_slotsLock)
        {
            if (!_free.TryPop(out slot))
            {
                slot = _nextSlot++;
                if ((slot >> ChunkBits) >= _chunks.Length)
                {
                    var chunks = new SocketStream?[_chunks.Length + 1][];
                    var generations = new uint[_chunks.Length + 1][];
                    Array.Copy(_chunks, chunks, _chunks.Length);
                    Array.Copy(_generations, generations, _generations.Length);
                    chunks[^1] = new SocketStream?[ChunkSize];
                    generations[^1] = new uint[ChunkSize];
                    _generations = generations;
                    Volatile.Write(ref _chunks, chunks);
                }
            }

            generation = _generations[slot >> ChunkBits][slot & (ChunkSize - 1)];
            _registered++;
        }

        var thread = (int)((uint)Interlocked.Increment(ref _nextThread) % (uint)_epollFds.Length);
        return (((ulong)generation << 32) | (uint)slot, _epollFds[thread]);
    }

    /// <summary>Puts <paramref name="stream"/>, whose <see cref="SocketStream.Token"/> is <paramref name="token"/>, in its slot.</summary>
    public void Publish(ulong token, SocketStream stream)
    {
        var slot = (int)(uint)token;
        Volatile.Write(ref Volatile.Read(ref _chunks)[slot >> ChunkBits][slot & (ChunkSize - 1)], stream);
    }

    /// <summary>Starts watching <paramref name="fd"/>: edge-triggered input, output and hang-up, with the slot's token as data.</summary>
    public static int Watch(int epollFd, int fd, ulong token) =>
        EpollNative.Control(epollFd, EpollNative.CtlAdd, fd, EpollNative.EpollIn | EpollNative.EpollOut | EpollNative.EpollRdHup | EpollNative.EpollEt, token);

    /// <summary>Stops watching <paramref name="fd"/> (before it is closed, so a reused descriptor number is not watched for the old stream).</summary>
    public static void Unwatch(int epollFd, int fd) => EpollNative.Control(epollFd, EpollNative.CtlDel, fd, 0, 0);

    /// <summary>Frees the slot of <paramref name="token"/>: its generation moves on, so events still in flight for it are dropped.</summary>
    public void Release(ulong token)
    {
        var slot = (int)(uint)token;
        lock (_slotsLock)
        {
            ref var generation = ref _generations[slot >> ChunkBits][slot & (ChunkSize - 1)];
            if (generation != (uint)(token >> 32))
            {
                return;
            }

            Volatile.Write(ref _chunks[slot >> ChunkBits][slot & (ChunkSize - 1)], null);
            generation++;
            _free.Push(slot);
            _registered--;
        }
    }

    private SocketStream? Find(ulong token)
    {
        var slot = (int)(uint)token;
        var chunks = Volatile.Read(ref _chunks);
        if ((slot >> ChunkBits) >= chunks.Length)
        {
            return null;
        }

        var stream = Volatile.Read(ref chunks[slot >> ChunkBits][slot & (ChunkSize - 1)]);
        return stream is not null && stream.Token == token ? stream : null;
    }

    private void Loop(int index)
    {
        var epfd = _epollFds[index];
        var size = EpollNative.EventSize;
        var offset = EpollNative.DataOffset;
        var events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * size));
        while (true)
        {
            // A look without waiting first; then, while nothing came, yields (see YieldsBeforeSleep); then the sleep.
            var n = YieldsBeforeSleep > 0 ? EpollNative.EpollWait(epfd, events, MaxEvents, 0) : 0;
            for (var i = 0; n == 0 && i < YieldsBeforeSleep; i++)
            {
                Thread.Yield();
                n = EpollNative.EpollWait(epfd, events, MaxEvents, 0);
            }

            if (n == 0)
            {
                n = EpollNative.EpollWait(epfd, events, MaxEvents, -1);
            }

            if (n < 0)
            {
                if (Marshal.GetLastPInvokeError() == EpollNative.Eintr)
                {
                    continue;
                }

                // Not expected for a valid epoll descriptor; keep the thread alive rather than spin.
                Thread.Sleep(10);
                continue;
            }

            Volatile.Write(ref _busySince[index], Environment.TickCount64);
            Dispatch(events, n, size, offset);
            Volatile.Write(ref _busySince[index], 0);
        }
    }

    /// <summary>
    /// Hands one epoll_wait's events to their sockets. A method of its own, not part of <see cref="Loop"/>: a method
    /// that is entered once and never returns only ever runs the JIT's on-stack-replacement code, while this one, called
    /// for every batch, gets fully optimised.
    /// </summary>
    private void Dispatch(byte* events, int n, int size, int offset)
    {
        for (var i = 0; i < n; i++)
        {
            var e = events + (i * size);
            if (Find(*(ulong*)(e + offset)) is not { } stream)
            {
                continue;
            }

            try
            {
                stream.OnEvents(*(uint*)e);
            }
            catch (Exception)
            {
                // A continuation that escaped its own error handling (a state machine captures its exceptions, so
                // this is a bug): the other sockets of this thread must go on being served.
            }
        }
    }

    /// <summary>
    /// One look of the watchdog (see the type's summary); returns how many lost wake-ups it gave. Never runs twice at
    /// once. Internal for tests, which run it by hand on an engine without event threads.
    /// </summary>
    internal int Sweep()
    {
        if (Interlocked.Exchange(ref _sweeping, 1) != 0)
        {
            return 0;
        }

        try
        {
            ReportBusyThreads();
            return WakeLost();
        }
        catch (Exception e)
        {
            Warn?.Invoke($"the I/O layer's watchdog failed: {e.Message}");
            return 0;
        }
        finally
        {
            Volatile.Write(ref _sweeping, 0);
        }
    }

    private void ReportBusyThreads()
    {
        var now = Environment.TickCount64;
        for (var i = 0; i < _busySince.Length; i++)
        {
            var since = Volatile.Read(ref _busySince[i]);
            if (since != 0 && now - since > (long)SweepPeriod.TotalMilliseconds && _busyReported[i] != since)
            {
                _busyReported[i] = since;
                Warn?.Invoke($"I/O layer: event thread {i} has been handling one batch of socket events for {(now - since) / 1000.0:0.0} s: "
                             + "a continuation is blocking it, and the sockets it serves wait");
            }
        }
    }

    private unsafe int WakeLost()
    {
        var candidates = _candidates;
        candidates.Clear();
        foreach (var chunk in Volatile.Read(ref _chunks))
        {
            foreach (var stream in chunk)
            {
                if (stream is null)
                {
                    continue;
                }

                if (stream.ReadWaitsForEdge(out var version))
                {
                    candidates.Add((stream, false, version));
                }

                if (stream.WriteWaitsForEdge(out version))
                {
                    candidates.Add((stream, true, version));
                }
            }
        }

        if (candidates.Count == 0)
        {
            _suspects.Clear();
            return 0;
        }

        if (_pollFds.Length < candidates.Count)
        {
            _pollFds = new EpollNative.PollFd[Math.Max(candidates.Count, _pollFds.Length * 2)];
        }

        for (var i = 0; i < candidates.Count; i++)
        {
            _pollFds[i] = new EpollNative.PollFd
            {
                Fd = candidates[i].Stream.Descriptor,
                Events = candidates[i].Write ? EpollNative.PollOut : (short)(EpollNative.PollIn | EpollNative.PollRdHup),
            };
        }

        int ready;
        fixed (EpollNative.PollFd* fds = _pollFds)
        {
            ready = EpollNative.Poll(fds, (nuint)candidates.Count, 0);
        }

        if (ready <= 0)
        {
            _suspects.Clear();
            return 0;
        }

        var suspects = new HashSet<(SocketStream, bool, short)>();
        var woken = 0;
        for (var i = 0; i < candidates.Count; i++)
        {
            if (_pollFds[i].Returned == 0)
            {
                continue;
            }

            var candidate = candidates[i];
            if (!_suspects.Contains(candidate))
            {
                suspects.Add(candidate);
                continue;
            }

            woken++;
            Interlocked.Increment(ref _lostWakeups);
            Warn?.Invoke($"I/O layer: a {(candidate.Write ? "write" : "read")} parked on a ready socket (local {candidate.Stream.Describe()}) "
                         + $"got no wake-up for {SweepPeriod.TotalSeconds:0} s: woken by the watchdog");
            candidate.Stream.OnEvents(candidate.Write ? EpollNative.EpollOut : EpollNative.EpollIn);
        }

        _suspects = suspects;
        candidates.Clear();
        return woken;
    }
}
