<#
.SYNOPSIS
  Build llm-gateway on Windows: the project wheel, a wheelhouse and a standalone run directory.

.DESCRIPTION
  The Windows twin of deploy/build.sh; it runs the same pip steps in the same order.
    all         (default) wheelhouse, then rundir
    wheel       dist\llm_gateway-<version>-py3-none-any.whl from the repository (pip only)
    wheelhouse  wheel, then every runtime dependency as a wheel into the wheelhouse
    install     a virtualenv at -Target with llm-gateway from the wheelhouse only (--no-index)
    rundir      install into <out>\llm-gateway-run\venv, copy gateway.yaml, write run.ps1 and run.cmd
    binary      <out>\llm-gateway.exe: one executable file that needs no Python (PyInstaller,
                deploy\frozen\llm-gateway.spec), built in <out>\freeze-venv from the wheelhouse plus PyInstaller

  Environment: LLM_GATEWAY_BUILD_OUT (output dir, default <repo>\dist), LLM_GATEWAY_WHEELHOUSE
  (default <out>\wheels), PYTHON (interpreter, default: py -3 when the launcher exists, else python; needs >= 3.11).

.EXAMPLE
  powershell -ExecutionPolicy Bypass -File deploy\build.ps1
  dist\llm-gateway-run\run.ps1 serve --port 8080
#>
[CmdletBinding()]
param(
    [ValidateSet('all', 'wheel', 'wheelhouse', 'install', 'rundir', 'binary')]
    [string]$Command = 'all',
    [string]$Target = ''
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$RepoRoot = (Resolve-Path (Join-Path $PSScriptRoot '..')).Path
$OutDir = if ($env:LLM_GATEWAY_BUILD_OUT) { $env:LLM_GATEWAY_BUILD_OUT } else { Join-Path $RepoRoot 'dist' }
$Wheelhouse = if ($env:LLM_GATEWAY_WHEELHOUSE) { $env:LLM_GATEWAY_WHEELHOUSE } else { Join-Path $OutDir 'wheels' }

function Write-Log([string]$Message) { Write-Host "[build] $Message" }

# The interpreter as an argument list, so `py -3.11` works as well as a plain path.
function Get-PythonCommand {
    if ($env:PYTHON) { return , @($env:PYTHON) }
    if (Get-Command py -ErrorAction SilentlyContinue) { return , @('py', '-3') }
    return , @('python')
}

# Runs a native command and stops the build when it fails (PowerShell 5.1 does not do that by itself).
function Invoke-Checked([string[]]$CommandLine) {
    $exe = $CommandLine[0]
    $rest = @()
    if ($CommandLine.Length -gt 1) { $rest = $CommandLine[1..($CommandLine.Length - 1)] }
    & $exe @rest
    if ($LASTEXITCODE -ne 0) { throw "command failed ($LASTEXITCODE): $($CommandLine -join ' ')" }
}

function Invoke-Python([string[]]$Arguments) {
    Invoke-Checked ((Get-PythonCommand) + $Arguments)
}

function Test-PythonVersion {
    # No double quotes in native arguments: Windows PowerShell 5.1 passes them unescaped.
    $check = 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'
    try { Invoke-Python @('-c', $check) } catch { throw "llm-gateway needs Python >= 3.11 ($($_.Exception.Message))" }
}

# Windows venvs keep the interpreter in Scripts\, POSIX ones (pwsh on Linux/macOS) in bin/.
function Get-VenvPython([string]$Venv) {
    if ($env:OS -eq 'Windows_NT') { return Join-Path $Venv 'Scripts\python.exe' }
    return Join-Path $Venv 'bin/python'
}

function Get-ProjectWheel([string]$Dir) {
    $found = @(Get-ChildItem -Path $Dir -Filter 'llm_gateway-*.whl' -File -ErrorAction SilentlyContinue)
    if ($found.Count -ne 1) { throw "expected exactly one llm_gateway-*.whl in $Dir, found $($found.Count)" }
    return $found[0].FullName
}

function Build-Wheel {
    Test-PythonVersion
    New-Item -ItemType Directory -Force -Path $OutDir | Out-Null
    Get-ChildItem -Path $OutDir -Filter 'llm_gateway-*.whl' -File | Remove-Item -Force
    Write-Log "building the project wheel into $OutDir"
    Invoke-Python @('-m', 'pip', 'wheel', '--no-deps', '--wheel-dir', $OutDir, $RepoRoot)
    Write-Log "built $(Get-ProjectWheel $OutDir)"
}

function Build-Wheelhouse {
    Build-Wheel
    $wheel = Get-ProjectWheel $OutDir
    New-Item -ItemType Directory -Force -Path $Wheelhouse | Out-Null
    Get-ChildItem -Path $Wheelhouse -Filter 'llm_gateway-*.whl' -File | Remove-Item -Force
    Write-Log "collecting the project and its dependencies as wheels into $Wheelhouse"
    Invoke-Python @('-m', 'pip', 'wheel', '--wheel-dir', $Wheelhouse, $wheel)
    Get-ProjectWheel $Wheelhouse | Out-Null
}

function Install-Venv([string]$Venv) {
    if (-not $Venv) { throw 'install needs a target directory: build.ps1 install -Target VENV_DIR' }
    Test-PythonVersion
    if (-not (Test-Path $Wheelhouse)) { throw "no wheelhouse at $Wheelhouse; run 'build.ps1 wheelhouse' first" }
    $wheel = Get-ProjectWheel $Wheelhouse
    if (Test-Path $Venv) {
        $isVenv = Test-Path (Join-Path $Venv 'pyvenv.cfg')
        $isEmpty = @(Get-ChildItem -Force -Path $Venv).Count -eq 0
        if (-not ($isVenv -or $isEmpty)) { throw "$Venv exists and is not a virtualenv; refusing to replace it" }
        Remove-Item -Recurse -Force $Venv
    }
    Write-Log "creating $Venv and installing from $Wheelhouse"
    Invoke-Python @('-m', 'venv', $Venv)
    $venvPython = Get-VenvPython $Venv
    Invoke-Checked @($venvPython, '-m', 'pip', 'install', '--no-index', '--no-cache-dir',
        '--find-links', $Wheelhouse, $wheel)
    Invoke-Checked @($venvPython, '-c',
        'import importlib.metadata as m; print(''llm-gateway'', m.version(''llm-gateway''))')
}

function Write-RunScripts([string]$RunDir) {
    $runPs1 = @'
# Start llm-gateway from this directory: .\run.ps1 [serve|check-config ...] (default: serve).
# Secrets (OPENAI_API_KEY, GATEWAY_KEY_A, ...) come from the environment; an .\env file of KEY=value
# lines is loaded if present.
$ErrorActionPreference = 'Stop'
$envFile = Join-Path $PSScriptRoot 'env'
if (Test-Path $envFile) {
    foreach ($line in Get-Content $envFile) {
        if ($line -match '^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$') {
            Set-Item -Path "env:$($Matches[1])" -Value $Matches[2].Trim('"')
        }
    }
}
if (-not $env:LLM_GATEWAY_CONFIG) { $env:LLM_GATEWAY_CONFIG = Join-Path $PSScriptRoot 'gateway.yaml' }
$gatewayArgs = if ($args.Count -gt 0) { $args } else { @('serve') }
$python = if ($env:OS -eq 'Windows_NT') { 'venv\Scripts\python.exe' } else { 'venv/bin/python' }
& (Join-Path $PSScriptRoot $python) -m gateway @gatewayArgs
exit $LASTEXITCODE
'@
    Set-Content -Path (Join-Path $RunDir 'run.ps1') -Value $runPs1 -Encoding UTF8
    $runCmd = "@echo off`r`npowershell -NoProfile -ExecutionPolicy Bypass -File `"%~dp0run.ps1`" %*`r`n"
    Set-Content -Path (Join-Path $RunDir 'run.cmd') -Value $runCmd -Encoding ASCII -NoNewline
}

function Build-RunDir {
    $runDir = Join-Path $OutDir 'llm-gateway-run'
    Install-Venv (Join-Path $runDir 'venv')
    $config = Join-Path $RepoRoot 'gateway.yaml'
    if (Test-Path $config) {
        Copy-Item -Force $config (Join-Path $runDir 'gateway.yaml')
    } else {
        Write-Log "warning: $config not found; put a config at $runDir\gateway.yaml"
    }
    Write-RunScripts $runDir
    Write-Log "run directory ready: $runDir\run.ps1 serve --port 8080"
}

# binary: one file that runs without Python, from a throw-away venv of the wheelhouse + PyInstaller.
function Build-Binary {
    Build-Wheelhouse
    $venv = Join-Path $OutDir 'freeze-venv'
    Install-Venv $venv
    $venvPython = Get-VenvPython $venv
    Write-Log "installing PyInstaller into $venv"
    Invoke-Checked @($venvPython, '-m', 'pip', 'install', '--quiet', 'pyinstaller>=6.10,<7')
    $exeName = if ($env:OS -eq 'Windows_NT') { 'llm-gateway.exe' } else { 'llm-gateway' }
    $exe = Join-Path $OutDir $exeName
    if (Test-Path $exe) { Remove-Item -Force $exe }
    $spec = Join-Path (Join-Path $PSScriptRoot 'frozen') 'llm-gateway.spec'
    Invoke-Checked @($venvPython, '-m', 'PyInstaller', '--noconfirm', '--clean', '--log-level', 'WARN',
        '--distpath', $OutDir, '--workpath', (Join-Path $OutDir 'pyinstaller-work'), $spec)
    if (-not (Test-Path $exe)) { throw "PyInstaller did not produce $exe" }
    Invoke-Checked @($exe, '--version')
    Write-Log "executable ready: $exe"
}

switch ($Command) {
    'all' { Build-Wheelhouse; Build-RunDir }
    'wheel' { Build-Wheel }
    'wheelhouse' { Build-Wheelhouse }
    'install' { Install-Venv $Target }
    'rundir' { Build-RunDir }
    'binary' { Build-Binary }
}
